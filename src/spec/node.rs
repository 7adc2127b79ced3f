//! A YAML document as a plain tree whose scalars keep their text.
//!
//! The spec is read into this tree and then interpreted by hand, not by serde derives:
//! unknown fields become warnings (MLflow ignores them), every wrong shape gets a message
//! that names the field and what it should be, and a number of any size (a 30-digit
//! default) is text like any other value instead of a serde error about `u128`.

use std::fmt;

use serde::de::{
    Deserialize, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

/// One YAML node.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    /// A scalar that is not null: its text as YAML resolved it (`true`, `0.001`, `M-3`).
    Scalar(String),
    Seq(Vec<Node>),
    /// Keys in file order; duplicates are refused while parsing.
    Map(Vec<(String, Node)>),
}

impl Node {
    /// What the node is, for messages: "a list", "a mapping", ...
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Null => "empty",
            Node::Scalar(_) => "a single value",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }

    /// The text of a scalar; `None` for null, lists and mappings.
    pub fn text(&self) -> Option<&str> {
        match self {
            Node::Scalar(text) => Some(text),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Node, E> {
        Ok(Node::Scalar(value.to_string()))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Node, E> {
        Ok(Node::Scalar(value.to_string()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Node, E> {
        Ok(Node::Scalar(value.to_string()))
    }

    fn visit_i128<E>(self, value: i128) -> Result<Node, E> {
        Ok(Node::Scalar(value.to_string()))
    }

    fn visit_u128<E>(self, value: u128) -> Result<Node, E> {
        Ok(Node::Scalar(value.to_string()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Node, E> {
        // serde_yaml's own spelling (`0.001`, `1e20`, `.inf`), as defaults always had.
        Ok(Node::Scalar(serde_yaml::Number::from(value).to_string()))
    }

    fn visit_str<E>(self, value: &str) -> Result<Node, E> {
        Ok(Node::Scalar(value.to_string()))
    }

    fn visit_string<E>(self, value: String) -> Result<Node, E> {
        Ok(Node::Scalar(value))
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut pairs: Vec<(String, Node)> = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let key = match key {
                Node::Scalar(text) => text,
                Node::Null => String::new(),
                other => {
                    return Err(serde::de::Error::custom(format!(
                        "a mapping key must be a name, not {}",
                        other.kind()
                    )))
                }
            };
            if pairs.iter().any(|(seen, _)| *seen == key) {
                return Err(serde::de::Error::custom(format!("duplicate key `{key}`")));
            }
            let value = map.next_value()?;
            pairs.push((key, value));
        }
        Ok(Node::Map(pairs))
    }

    /// A tagged value (`!tag value`): the tag is dropped, the value kept.
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Node, A::Error> {
        let (_tag, value): (Node, _) = data.variant()?;
        value.newtype_variant()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Node {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn scalars_keep_their_text_at_any_size() {
        assert_eq!(
            parse("[1, 1e-3, true, 99999999999999999999999, -99999999999999999999999, x, ~]"),
            Node::Seq(vec![
                Node::Scalar("1".into()),
                Node::Scalar("0.001".into()),
                Node::Scalar("true".into()),
                Node::Scalar("99999999999999999999999".into()),
                Node::Scalar("-99999999999999999999999".into()),
                Node::Scalar("x".into()),
                Node::Null,
            ])
        );
        assert_eq!(
            parse("a: !custom 5"),
            Node::Map(vec![("a".into(), Node::Scalar("5".into()))])
        );
    }

    #[test]
    fn duplicate_and_structured_keys_are_refused() {
        let error = serde_yaml::from_str::<Node>("a: 1\na: 2\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("duplicate key `a`"), "{error}");
        let error = serde_yaml::from_str::<Node>("? [a]\n: 1\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("must be a name, not a list"), "{error}");
    }
}
