//! Kubernetes quantities (`Quantity::parse`).
//!
//! Invariants: no panic and no slow path (libFuzzer's timeout); a leading
//! `+` changes nothing; a leading `-` gives the negative of the same
//! value; zero in any spelling is neither negative nor positive;
//! comparison is a total order consistent with the sign.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waf_admission::quantity::Quantity;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (a, b) = text.split_once('\n').unwrap_or((text, ""));
    let qa = Quantity::parse(a);
    if let Ok(q) = &qa {
        assert!(!(q.is_zero() && q.is_negative()), "{a:?}");
        let zero = Quantity::parse("0").expect("0 is a quantity");
        assert_eq!(q.is_negative(), *q < zero, "{a:?}");
        assert_eq!(q.is_zero(), *q == zero, "{a:?}");
    }
    if !a.starts_with(['+', '-']) {
        let plus = Quantity::parse(&format!("+{a}"));
        assert_eq!(plus.is_ok(), qa.is_ok(), "{a:?} and +{a:?}");
        if let (Ok(p), Ok(q)) = (&plus, &qa) {
            assert_eq!(p, q, "{a:?}");
        }
        if let Ok(q) = &qa {
            let n = Quantity::parse(&format!("-{a}"))
                .unwrap_or_else(|e| panic!("{a:?} parses, -{a:?} does not: {e}"));
            assert_eq!(n.is_zero(), q.is_zero(), "-{a:?}");
            assert_eq!(n.is_negative(), !q.is_zero(), "-{a:?}");
        }
    }
    if let (Ok(x), Ok(y)) = (&qa, Quantity::parse(b)) {
        assert_eq!(x.cmp(&y), y.cmp(x).reverse(), "{a:?} vs {b:?}");
    }
});
