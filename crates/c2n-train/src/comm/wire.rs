//! Byte encoding of string lists for backends that only move bytes (MPI, NCCL).

#![cfg_attr(not(any(feature = "mpi", feature = "nccl")), allow(dead_code))]

/// `u64` count, then per string a `u64` byte length and the UTF-8 bytes (little endian).
pub(crate) fn encode_strings(items: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + items.iter().map(|s| 8 + s.len()).sum::<usize>());
    out.extend_from_slice(&(items.len() as u64).to_le_bytes());
    for s in items {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    out
}

pub(crate) fn decode_strings(mut bytes: &[u8]) -> Option<Vec<String>> {
    fn take_u64(bytes: &mut &[u8]) -> Option<usize> {
        let (head, rest) = bytes.split_first_chunk::<8>()?;
        *bytes = rest;
        usize::try_from(u64::from_le_bytes(*head)).ok()
    }
    let n = take_u64(&mut bytes)?;
    let mut out = Vec::with_capacity(n.min(bytes.len()));
    for _ in 0..n {
        let len = take_u64(&mut bytes)?;
        if len > bytes.len() {
            return None;
        }
        let (s, rest) = bytes.split_at(len);
        out.push(String::from_utf8(s.to_vec()).ok()?);
        bytes = rest;
    }
    bytes.is_empty().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_and_garbage_is_rejected() {
        let items = vec!["".to_string(), "héllo\tworld".to_string(), "x".repeat(300)];
        assert_eq!(decode_strings(&encode_strings(&items)), Some(items));
        assert_eq!(decode_strings(&encode_strings(&[])), Some(vec![]));
        assert_eq!(decode_strings(&[1, 0, 0]), None);
        let mut truncated = encode_strings(&["abc".to_string()]);
        truncated.pop();
        assert_eq!(decode_strings(&truncated), None);
    }
}
