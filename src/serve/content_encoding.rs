//! The `Content-Encoding` of request bodies. gzip and deflate are decoded, never past the body
//! limit (a small compressed body must not inflate without end); `identity` passes; any other
//! coding is refused (HTTP 415) rather than parsed as if the bytes were plain.

use std::io::Read;

use axum::body::Bytes;

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unsupported Content-Encoding `{0}`; send the body plain, gzip or deflate")]
    Unsupported(String),
    #[error(
        "the body is marked Content-Encoding `{encoding}` but is not valid {encoding}: {reason}"
    )]
    Corrupt { encoding: String, reason: String },
    #[error("the decoded request body is larger than the limit of {limit} bytes; send fewer rows per request")]
    TooLarge { limit: usize },
}

/// Decodes `body` as the `Content-Encoding` header value says (codings listed in the order
/// they were applied, so undone last to first); at most `limit` decoded bytes.
pub fn decode_body(
    content_encoding: Option<&str>,
    body: Bytes,
    limit: usize,
) -> Result<Bytes, DecodeError> {
    let Some(header) = content_encoding else {
        return Ok(body);
    };
    let mut body = body;
    for coding in header.rsplit(',').map(str::trim).filter(|c| !c.is_empty()) {
        body = match coding.to_ascii_lowercase().as_str() {
            "identity" => body,
            "gzip" | "x-gzip" => {
                inflate(flate2::read::MultiGzDecoder::new(&body[..]), coding, limit)?
            }
            "deflate" => inflate(flate2::read::ZlibDecoder::new(&body[..]), coding, limit)?,
            _ => return Err(DecodeError::Unsupported(coding.to_string())),
        };
    }
    Ok(body)
}

/// Reads a decoder to its end, refusing more than `limit` bytes of output.
fn inflate(decoder: impl Read, coding: &str, limit: usize) -> Result<Bytes, DecodeError> {
    let mut decoded = Vec::new();
    decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut decoded)
        .map_err(|e| DecodeError::Corrupt {
            encoding: coding.to_string(),
            reason: e.to_string(),
        })?;
    if decoded.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(Bytes::from(decoded))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Bytes {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        Bytes::from(encoder.finish().unwrap())
    }

    #[test]
    fn decodes_gzip_and_deflate_and_passes_identity() {
        let plain = Bytes::from_static(b"a,b\n1,2\n");
        assert_eq!(decode_body(None, plain.clone(), 100), Ok(plain.clone()));
        assert_eq!(
            decode_body(Some("identity"), plain.clone(), 100),
            Ok(plain.clone())
        );
        assert_eq!(
            decode_body(Some("GZIP"), gzip(&plain), 100),
            Ok(plain.clone())
        );
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        zlib.write_all(&plain).unwrap();
        let deflated = Bytes::from(zlib.finish().unwrap());
        assert_eq!(
            decode_body(Some("deflate"), deflated, 100),
            Ok(plain.clone())
        );
        // Two codings, gzip applied twice: undone twice.
        assert_eq!(
            decode_body(Some("gzip, gzip"), gzip(&gzip(&plain)), 100),
            Ok(plain)
        );
    }

    #[test]
    fn refuses_lies_unknown_codings_and_bombs() {
        let plain = Bytes::from_static(b"{\"instances\": [[1]]}");
        let lie = decode_body(Some("gzip"), plain.clone(), 100).unwrap_err();
        assert!(matches!(lie, DecodeError::Corrupt { .. }), "{lie}");
        assert_eq!(
            decode_body(Some("br"), plain, 100),
            Err(DecodeError::Unsupported("br".into()))
        );
        // 10 MB of zeros compress a hundredfold and more; decoding stops at the limit.
        let bomb = gzip(&vec![0u8; 10_000_000]);
        assert!(bomb.len() < 100_000, "{}", bomb.len());
        assert_eq!(
            decode_body(Some("gzip"), bomb, 1_000_000),
            Err(DecodeError::TooLarge { limit: 1_000_000 })
        );
    }
}
