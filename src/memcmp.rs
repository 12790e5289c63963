//! The module's `memcmp` and `bcmp` on wasm32: eight bytes a step.
//!
//! Rust's `==` and `cmp` on strings and byte slices call `memcmp` (or `bcmp`): every key
//! the policy looks up in a map or a never-read list, every key the writer matches to its
//! layout. wasi-libc's compares one byte at a time; it was 4–5% of a typical `validate`
//! in the compiled module (issue 24's profile), where the native build has the platform's
//! vectorised one. A `u64` is native on wasm, so eight bytes cost one compare, and a key
//! of four to eight bytes two. Defined here, the linker takes these and leaves libc's out
//! (an archive's member is linked only for a symbol still undefined); wasm-opt then drops
//! the two exports a `#[no_mangle]` function gets in a cdylib (scripts/optimize-wasm.sh).
//!
//! The core, [`compare`], is safe code over slices, so its tests run natively.

use std::cmp::Ordering;

/// Compares `a` and `b` as `memcmp` does (bytes unsigned, the first that differ decide),
/// then by length as `Ord` does: the sign of the result is `a.cmp(b)`.
pub fn compare(a: &[u8], b: &[u8]) -> i32 {
    let common = a.len().min(b.len());
    let (a_common, b_common) = (
        a.get(..common).unwrap_or_default(),
        b.get(..common).unwrap_or_default(),
    );
    let first_difference = if common >= 8 {
        in_words(a_common, b_common)
    } else if common >= 4 {
        in_halves(a_common, b_common)
    } else {
        in_bytes(a_common, b_common)
    };
    match (first_difference, a.len().cmp(&b.len())) {
        (Some(difference), _) => difference,
        (None, Ordering::Less) => -1,
        (None, Ordering::Equal) => 0,
        (None, Ordering::Greater) => 1,
    }
}

/// Equal lengths of eight or more: word by word, the last word the last eight bytes
/// (overlapping the one before: the bytes they share were found equal).
fn in_words(a: &[u8], b: &[u8]) -> Option<i32> {
    let last = a.len().saturating_sub(8);
    let mut at = 0;
    while at < a.len() {
        let start = at.min(last);
        let (x, y) = (word8(a, start), word8(b, start));
        if x != y {
            return Some(first_byte_difference(x, y));
        }
        at += 8;
    }
    None
}

/// Equal lengths of four to seven: the first four bytes, then the last four.
fn in_halves(a: &[u8], b: &[u8]) -> Option<i32> {
    let last = a.len().saturating_sub(4);
    [0, last].into_iter().find_map(|start| {
        let (x, y) = (word4(a, start), word4(b, start));
        (x != y).then(|| first_byte_difference(x, y))
    })
}

/// Equal lengths under four: byte by byte.
fn in_bytes(a: &[u8], b: &[u8]) -> Option<i32> {
    a.iter()
        .zip(b)
        .find(|(x, y)| x != y)
        .map(|(x, y)| i32::from(*x) - i32::from(*y))
}

/// The eight bytes from `start` as a little-endian word (one load); zero past the end,
/// which the callers never ask for.
fn word8(bytes: &[u8], start: usize) -> u64 {
    bytes
        .get(start..)
        .and_then(<[u8]>::first_chunk)
        .map_or(0, |word| u64::from_le_bytes(*word))
}

/// The four bytes from `start` as a little-endian word, as [`word8`].
fn word4(bytes: &[u8], start: usize) -> u64 {
    bytes
        .get(start..)
        .and_then(<[u8]>::first_chunk)
        .map_or(0, |word| u64::from(u32::from_le_bytes(*word)))
}

/// The difference of the first bytes that differ in two unequal little-endian words: the
/// lowest ones.
fn first_byte_difference(x: u64, y: u64) -> i32 {
    let shift = (x ^ y).trailing_zeros() & !7;
    let byte = |word: u64| i32::from((word >> shift).to_le_bytes()[0]);
    byte(x) - byte(y)
}

/// The C symbols, on wasm32 only: natively the platform's own serve.
#[cfg(target_arch = "wasm32")]
mod symbols {
    use super::compare;

    /// C's `memcmp`: `a` and `b` compared over `n` bytes.
    ///
    /// # Safety
    /// `a` and `b` must each be valid for reads of `n` bytes, as C requires.
    // Out of line: inlined at every call site, it made the module 7 KB larger.
    #[unsafe(no_mangle)]
    #[inline(never)]
    pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        // C allows any pointer with `n` zero, a slice does not.
        if n == 0 {
            return 0;
        }
        // SAFETY: the caller's contract (C's for memcmp), and `n` is not zero.
        let (a, b) = unsafe {
            (
                std::slice::from_raw_parts(a, n),
                std::slice::from_raw_parts(b, n),
            )
        };
        compare(a, b)
    }

    /// C's `bcmp`: zero when `a` and `b` are equal over `n` bytes.
    ///
    /// # Safety
    /// As [`memcmp`].
    #[unsafe(no_mangle)]
    #[inline(never)]
    pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        // SAFETY: the caller's contract, which is memcmp's.
        unsafe { memcmp(a, b, n) }
    }
}

#[cfg(test)]
mod tests;
