//! Post-processing of a predicted row (reference-semantics §6.7).

/// A prediction ends at its **first** id 0, exclusive.
///
/// The zeros are normally right padding, but a generated `<s>` (id 0) in the middle of a
/// row truncates the prediction too, as in the reference.
///
/// ```
/// use c2n_model::beam::cut_at_first_zero;
/// assert_eq!(cut_at_first_zero(&[5, 6, 0, 0]), &[5, 6]);
/// assert_eq!(cut_at_first_zero(&[5, 0, 7, 0]), &[5]);
/// assert_eq!(cut_at_first_zero(&[5, 6]), &[5, 6]);
/// ```
pub fn cut_at_first_zero(row: &[u32]) -> &[u32] {
    let end = row.iter().position(|&id| id == 0).unwrap_or(row.len());
    &row[..end]
}
