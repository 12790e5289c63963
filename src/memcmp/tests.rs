use super::*;
use proptest::prelude::*;

fn sign(n: i32) -> Ordering {
    n.cmp(&0)
}

/// A difference at every place, in and past the words, both ways, with bytes above 0x7f
/// (compared unsigned).
#[test]
fn the_first_differing_byte_decides_wherever_it_is() {
    for len in 0..=20 {
        for at in 0..len {
            let a = vec![0x41u8; len];
            let mut b = a.clone();
            b[at] = 0xff;
            assert_eq!(sign(compare(&a, &b)), Ordering::Less, "len {len} at {at}");
            assert_eq!(
                sign(compare(&b, &a)),
                Ordering::Greater,
                "len {len} at {at}"
            );
            // A later difference the other way does not count.
            let mut c = b.clone();
            if at + 1 < len {
                c[at + 1] = 0;
            }
            assert_eq!(
                sign(compare(&c, &a)),
                Ordering::Greater,
                "len {len} at {at}"
            );
        }
        let a = vec![0x41u8; len];
        assert_eq!(compare(&a, &a.clone()), 0);
    }
}

proptest! {
    /// As `Ord` on byte slices: over equal lengths (what memcmp is given), and with a
    /// shared prefix so that differences fall late.
    #[test]
    fn it_orders_as_ord_does(prefix in prop::collection::vec(any::<u8>(), 0..40), a in prop::collection::vec(any::<u8>(), 0..20), b in prop::collection::vec(any::<u8>(), 0..20)) {
        let a = [prefix.as_slice(), &a].concat();
        let b = [prefix.as_slice(), &b].concat();
        prop_assert_eq!(sign(compare(&a, &b)), a.cmp(&b));
        let n = a.len().min(b.len());
        prop_assert_eq!(sign(compare(&a[..n], &b[..n])), a[..n].cmp(&b[..n]));
    }
}
