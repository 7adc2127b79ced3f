//! What `runs/search`, `experiments/search` (and the history's pages) share: a page (`max_results`, `page_token`)
//! and a `filter` and `order_by` list in MLflow's syntax.

use crate::tracking::error::ApiError;
use crate::tracking::filter::SyntaxError;
use crate::tracking::request::Fields;
use crate::tracking::{page_token, validate};

/// A search request's page, filters and order keys, parsed.
pub struct SearchRequest<F, O> {
    pub offset: usize,
    pub limit: usize,
    pub filters: Vec<F>,
    pub order: Vec<O>,
}

impl<F, O> SearchRequest<F, O> {
    /// Reads the shared fields with the filter and order_by parsers of one kind of search.
    pub fn parse(
        fields: &Fields,
        filters: fn(&str) -> Result<Vec<F>, SyntaxError>,
        order: fn(&str) -> Result<O, SyntaxError>,
    ) -> Result<SearchRequest<F, O>, ApiError> {
        Ok(SearchRequest {
            limit: validate::max_results(fields.int("max_results")?)?,
            offset: page_token::decode(fields.string("page_token")?.as_deref())?,
            filters: filters(&fields.string("filter")?.unwrap_or_default())?,
            order: fields
                .strings("order_by")?
                .iter()
                .map(|clause| order(clause))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// The token of the page after the one at `offset`, when the store said more follow.
pub fn next_page_token(offset: usize, limit: usize, more: bool) -> Option<String> {
    more.then(|| page_token::encode(offset.saturating_add(limit)))
}
