//! `repr(float)` and `round(x, 2)` against CPython on awkward and random doubles
//! (tests/data/pyfloat.json).

mod common;

use c2n_eval::{python_repr, python_round};
use common::{fixture, str_of};

#[test]
fn repr_and_round_match_cpython() {
    let cases = fixture("pyfloat.json");
    let cases = cases.as_array().expect("array");
    assert!(cases.len() > 600);
    for case in cases {
        let bits = u64::from_str_radix(str_of(case, "bits"), 16).expect("hex bits");
        let x = f64::from_bits(bits);
        assert_eq!(python_repr(x), str_of(case, "repr"), "repr of {bits:016x}");
        assert_eq!(
            python_repr(python_round(x, 2)),
            str_of(case, "round2"),
            "round of {bits:016x}"
        );
    }
}
