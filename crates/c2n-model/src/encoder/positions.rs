//! Padding-aware RoBERTa position ids (spec §4.2), computed in integers on the host.

/// Position ids of one row: a pad gets `pad_id`; any other token gets
/// `pad_id + (number of non-pad tokens up to and including it)`.
///
/// ```
/// use c2n_model::encoder::padding_aware_positions;
/// // <s> a <pad> b </s> <pad>
/// assert_eq!(padding_aware_positions(&[0, 9, 1, 7, 2, 1], 1), vec![2, 3, 1, 4, 5, 1]);
/// ```
pub fn padding_aware_positions(ids: &[u32], pad_id: u32) -> Vec<u32> {
    let mut count = 0u32;
    ids.iter()
        .map(|&id| {
            if id == pad_id {
                pad_id
            } else {
                count += 1;
                pad_id + count
            }
        })
        .collect()
}
