//! The policy's heap on wasm32: size classes, one free list per class, new blocks bumped
//! from chunks the wasm memory grows by.
//!
//! Why our own: a `validate` builds and writes JSON in many small blocks and frees them all
//! before it returns; wasi-libc's dlmalloc (the target's default allocator) spends a large
//! part of that work on splitting, merging and bookkeeping (issue 24's profile). Here an
//! allocation is a list pop or a pointer bump, a free a list push, and the next call reuses
//! the blocks the last one freed.
//!
//! A request of `size` bytes aligned to `align` gets a block of its class: `size` rounded
//! up to a multiple of `max(align, 8)`, then, above 512 B, to a power of two. Fine classes
//! for the small blocks (nearly all of a `validate`'s) keep them dense: power-of-two
//! classes throughout doubled the memory, and made the 200-container pod slower than
//! dlmalloc despite fewer instructions. A freed block goes onto its class's list (its
//! first word links the next) and serves the next request of that class; blocks are
//! never split, merged nor given back (a wasm memory cannot shrink). New blocks are bumped
//! at an address aligned to the largest power of two that divides their size (at most a
//! page, or `align` when larger), so every block of a class is aligned for every request
//! of it; an alignment gap, and the rest of a chunk that the next grown memory does not
//! continue, are cut into aligned blocks on the free lists, not lost. The memory is grown
//! by at least [`CHUNK`] at a time.
//!
//! Bound: a live block of `n` bytes takes less than `n + 8` up to 512 B (for alignments
//! up to 8), less than `2n` above; the blocks of a class number at most the most that
//! were live at once, plus the gap blocks; so the heap is at most the sum, over the
//! classes, of each class's peak of live blocks times the class's size, plus one chunk.
//! A call repeated with the same input allocates the same classes, and the memory stops
//! growing after the first calls.
//!
//! The core ([`Heap`]) works over any [`Source`] of memory, so its tests run natively on
//! an arena; on wasm32 the source is `memory.grow` and the heap is the global allocator.
//!
//! It is C's allocator too (`malloc`, `calloc`, `realloc`, `free`, `aligned_alloc`): std's
//! `System` allocator (its thread-local bookkeeping) and wasi-libc's own code call those,
//! and without ours the linker brought in wasi-libc's dlmalloc for them, 7.9 KB of the
//! module for a few allocations at start. A C block keeps its size and alignment in the
//! two words before it, since `free` is not told them ([`Heap::c_alloc`]).

use core::alloc::Layout;
use core::ptr;

/// The grain of the small classes, and the smallest block: room for the free list's link
/// on every target.
const GRAIN: usize = 8;
/// The largest small class: sizes up to it take the next multiple of [`GRAIN`], larger
/// ones the next power of two.
const SMALL_LIMIT: usize = 512;
/// The small classes, one per multiple of [`GRAIN`] up to [`SMALL_LIMIT`].
const SMALL_CLASSES: usize = SMALL_LIMIT / GRAIN;
/// The small classes, then one per power of two a `usize` can hold (those up to
/// [`SMALL_LIMIT`] stay empty).
const CLASSES: usize = SMALL_CLASSES + usize::BITS as usize;
/// The alignment of a block from C's `malloc`: `max_align_t`'s on wasm32 (a `long double`
/// is 16 bytes there), and room for the two words before the block.
pub const C_ALIGN: usize = 16;
/// The wasm page. Blocks bigger than a page are aligned to a page, not to their size:
/// aligning a 1 MiB block to 1 MiB could waste up to 1 MiB.
pub const PAGE: usize = 64 * 1024;
/// The least memory asked of the source at once, so that growing is rare.
pub const CHUNK: usize = 1024 * 1024;

/// Where the heap's memory comes from: the wasm memory, or a test's arena.
///
/// # Safety
/// Every region [`Source::grow`] returns must be readable and writable, aligned to 8,
/// disjoint from all other memory in use, and given to the heap for good.
pub unsafe trait Source {
    /// At least `bytes` of fresh memory (its start address and length), or `None` when
    /// there is no more.
    fn grow(&mut self, bytes: usize) -> Option<(usize, usize)>;
}

/// Size-class free lists and a bump chunk over a [`Source`].
pub struct Heap<S> {
    /// The first free block of each class (see [`class_of`]), 0 when none.
    free: [usize; CLASSES],
    /// Where the next new block may start.
    next: usize,
    /// The end of the memory `next` bumps through.
    end: usize,
    /// Where more memory comes from.
    source: S,
}

/// A size class: where its free list is, and the size of its blocks.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Class {
    /// The index of its free list.
    index: usize,
    /// The size of its blocks.
    size: usize,
}

/// The class of a request: its size rounded up to a multiple of its alignment (and of
/// [`GRAIN`]), then, above [`SMALL_LIMIT`], to a power of two. `None` for a zero size or
/// one whose class a `usize` cannot hold.
fn class_of(size: usize, align: usize) -> Option<Class> {
    if size == 0 {
        return None;
    }
    let rounded = align_up(size, align.max(GRAIN))?;
    if rounded <= SMALL_LIMIT {
        return Some(Class {
            index: rounded / GRAIN - 1,
            size: rounded,
        });
    }
    let block = rounded.checked_next_power_of_two()?;
    Some(Class {
        index: SMALL_CLASSES + block.trailing_zeros() as usize,
        size: block,
    })
}

/// The layout of the whole block behind a C block of `size` bytes aligned to `align` (at
/// least [`C_ALIGN`]): `align` bytes before it, the last two words holding `size` and
/// `align`. `None` when no layout can be that large or `align` is not a power of two.
fn c_layout(size: usize, align: usize) -> Option<Layout> {
    Layout::from_size_align(align.checked_add(size)?, align).ok()
}

/// `address` rounded up to `align` (a power of two), `None` on overflow.
fn align_up(address: usize, align: usize) -> Option<usize> {
    address
        .checked_add(align - 1)
        .map(|bumped| bumped & !(align - 1))
}

impl<S: Source> Heap<S> {
    /// An empty heap: the first request grows the source.
    pub const fn new(source: S) -> Self {
        Heap {
            free: [0; CLASSES],
            next: 0,
            end: 0,
            source,
        }
    }

    /// A block for `layout`, or null when the layout's size is zero, its class does not
    /// fit a `usize`, or the source has no more memory.
    pub fn alloc(&mut self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout.size(), layout.align()) else {
            return ptr::null_mut();
        };
        let block = self
            .pop(class, layout.align())
            .or_else(|| self.bump(class, layout.align()));
        block.map_or(ptr::null_mut(), ptr::with_exposed_provenance_mut)
    }

    /// Frees a block.
    ///
    /// # Safety
    /// `block` came from this heap's `alloc` or `realloc` with this `layout` (its size the
    /// last one asked for) and is not used again.
    pub unsafe fn dealloc(&mut self, block: *mut u8, layout: Layout) {
        if let Some(class) = class_of(layout.size(), layout.align()) {
            // SAFETY: the caller gives the block back; it is at least 8 B of its class.
            unsafe { self.push(class, block.expose_provenance()) };
        }
    }

    /// The block resized to `new_size`: the same block when the size keeps its class,
    /// else a new one with the contents copied and the old one freed. Null (the old
    /// block kept) when no block can be had.
    ///
    /// # Safety
    /// As for [`Heap::dealloc`].
    pub unsafe fn realloc(&mut self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if class_of(new_size, layout.align()) == class_of(layout.size(), layout.align()) {
            return block;
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        let moved = self.alloc(new_layout);
        if !moved.is_null() {
            // SAFETY: both blocks are live, distinct and at least as long as the copy.
            unsafe {
                ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                self.dealloc(block, layout);
            }
        }
        moved
    }

    /// C's `aligned_alloc` (and `malloc`, with [`C_ALIGN`]): a block of `size` bytes
    /// aligned to `align` (a power of two), or null when impossible. The block is
    /// `max(align, C_ALIGN)` bytes into one from [`Heap::alloc`], and the two words before
    /// it hold `size` and that alignment, which [`Heap::c_free`] reads back.
    pub fn c_alloc(&mut self, size: usize, align: usize) -> *mut u8 {
        let align = align.max(C_ALIGN);
        let Some(layout) = c_layout(size, align) else {
            return ptr::null_mut();
        };
        let whole = self.alloc(layout);
        if whole.is_null() {
            return whole;
        }
        // SAFETY: `whole` has `align + size` bytes, and `align` is at least two words, so
        // both words and the block are inside it; the words are aligned since `align` is.
        unsafe {
            let block = whole.add(align);
            let words = block.cast::<usize>();
            words.sub(2).write(size);
            words.sub(1).write(align);
            block
        }
    }

    /// C's `free`: gives back a block from [`Heap::c_alloc`]; null does nothing.
    ///
    /// # Safety
    /// `block` is null or came from this heap's `c_alloc`/`c_realloc` and is not used again.
    pub unsafe fn c_free(&mut self, block: *mut u8) {
        if block.is_null() {
            return;
        }
        // SAFETY: the caller's promise: `c_alloc` wrote the two words before the block.
        let (size, align) = unsafe { Self::c_block(block) };
        // The layout `c_alloc` allocated with; checked again rather than assumed.
        let Some(layout) = c_layout(size, align) else {
            return;
        };
        // SAFETY: the whole block starts `align` bytes before the block, with this layout.
        unsafe { self.dealloc(block.sub(align), layout) };
    }

    /// C's `realloc`: `block`'s contents in a block of `size` bytes (of the same
    /// alignment), the old one freed; null, with `block` kept, when no block can be had. A
    /// null `block` is `malloc(size)`.
    ///
    /// # Safety
    /// As for [`Heap::c_free`].
    pub unsafe fn c_realloc(&mut self, block: *mut u8, size: usize) -> *mut u8 {
        if block.is_null() {
            return self.c_alloc(size, C_ALIGN);
        }
        // SAFETY: as in `c_free`.
        let (old_size, align) = unsafe { Self::c_block(block) };
        let moved = self.c_alloc(size, align);
        if !moved.is_null() {
            // SAFETY: both blocks are live, distinct and at least as long as the copy;
            // `block` is then given back as the caller allows.
            unsafe {
                ptr::copy_nonoverlapping(block, moved, old_size.min(size));
                self.c_free(block);
            }
        }
        moved
    }

    /// The size and alignment a [`Heap::c_alloc`] block keeps before it.
    ///
    /// # Safety
    /// `block` came from `c_alloc` and is live.
    unsafe fn c_block(block: *mut u8) -> (usize, usize) {
        // SAFETY: the caller's promise; `c_alloc` wrote both words.
        unsafe {
            let words = block.cast::<usize>();
            (words.sub(2).read(), words.sub(1).read())
        }
    }

    /// The first free block of a class, if it is aligned enough (a block bumped for a
    /// smaller alignment than a request above a page asks for is left on its list).
    fn pop(&mut self, class: Class, align: usize) -> Option<usize> {
        let head = self.free.get_mut(class.index)?;
        if *head == 0 || *head & (align - 1) != 0 {
            return None;
        }
        let block = *head;
        // SAFETY: a listed block is free heap memory whose first word `push` wrote.
        *head = unsafe { ptr::with_exposed_provenance::<usize>(block).read() };
        Some(block)
    }

    /// Puts a free block of the class on its list.
    ///
    /// # Safety
    /// `block` is free heap memory of the class's size, aligned to 8.
    unsafe fn push(&mut self, class: Class, block: usize) {
        if let Some(head) = self.free.get_mut(class.index) {
            // SAFETY: the caller's promise; the link is the block's first word.
            unsafe { ptr::with_exposed_provenance_mut::<usize>(block).write(*head) };
            *head = block;
        }
    }

    /// A new block of the class, bumped from the chunk, which grows when it is too short.
    fn bump(&mut self, class: Class, align: usize) -> Option<usize> {
        let size = class.size;
        let block_align = align.max((1 << size.trailing_zeros()).min(PAGE));
        if let Some(block) = self.bump_within(size, block_align) {
            return Some(block);
        }
        self.refill(size.checked_add(block_align)?)?;
        self.bump_within(size, block_align)
    }

    /// A block bumped from the current chunk, `None` when it does not fit; the alignment
    /// gap before it goes onto the free lists.
    fn bump_within(&mut self, size: usize, align: usize) -> Option<usize> {
        let start = align_up(self.next, align)?;
        let end = start.checked_add(size)?;
        if end > self.end {
            return None;
        }
        self.release(self.next, start);
        self.next = end;
        Some(start)
    }

    /// Grows the source by at least `needed` bytes (and at least a [`CHUNK`]). Memory that
    /// continues the chunk extends it; otherwise the chunk's rest goes onto the free lists
    /// and the new memory becomes the chunk.
    fn refill(&mut self, needed: usize) -> Option<()> {
        let (start, length) = self.source.grow(needed.max(CHUNK))?;
        // Whole 8-byte units only: `release` cuts blocks of at least 8 bytes.
        let end = start.checked_add(length & !(GRAIN - 1))?;
        if start != self.end {
            self.release(self.next, self.end);
            self.next = start;
        }
        self.end = end;
        Some(())
    }

    /// Cuts the unused memory `from..to` (both multiples of 8) into the largest blocks
    /// aligned to their size and lists them.
    fn release(&mut self, mut from: usize, to: usize) {
        while let Some(rest) = to.checked_sub(from).filter(|rest| *rest != 0) {
            let size = 1 << from.trailing_zeros().min(rest.ilog2());
            if let Some(class) = class_of(size, 1) {
                // SAFETY: `from..to` is heap memory no block uses; `from` is aligned to
                // the block, which is at least 8 B since both ends are multiples of 8, and
                // of its class's size since a power of two is.
                unsafe { self.push(class, from) };
            }
            from += size;
        }
    }
}

/// The global allocator of the wasm module. Not with the `atomics` feature (a threaded
/// wasm target): the heap has no lock, and its `Sync` rests on there being one thread.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
mod wasm {
    use super::{C_ALIGN, Heap, PAGE, Source};
    use core::alloc::{GlobalAlloc, Layout};
    use core::cell::UnsafeCell;

    /// The module's linear memory, grown a page at a time.
    struct WasmMemory;

    // SAFETY: `memory.grow` hands out fresh, zeroed, page-aligned pages that nothing else
    // uses (C's allocation functions are this heap too, below, so nothing else grows it).
    unsafe impl Source for WasmMemory {
        fn grow(&mut self, bytes: usize) -> Option<(usize, usize)> {
            let pages = bytes.div_ceil(PAGE);
            let previous = core::arch::wasm32::memory_grow(0, pages);
            if previous == usize::MAX {
                return None;
            }
            Some((previous.checked_mul(PAGE)?, pages.checked_mul(PAGE)?))
        }
    }

    /// The heap as Rust's global allocator.
    struct Global(UnsafeCell<Heap<WasmMemory>>);

    // SAFETY: wasm32-wasip1 has no threads, so one heap is never used from two at once;
    // and the heap never allocates, so no call to it starts while another runs.
    unsafe impl Sync for Global {}

    // SAFETY: `Heap` returns blocks of at least the layout's size and alignment, disjoint
    // while live, or null; each method below is the only user of the heap while it runs.
    // Not inlined: inlined into every allocating call site, the heap made the module 24 KB
    // larger for 1.4% fewer instructions per `validate` (measured).
    unsafe impl GlobalAlloc for Global {
        #[inline(never)]
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: no other reference to the heap exists during the call (see `Sync`).
            unsafe { (*self.0.get()).alloc(layout) }
        }

        #[inline(never)]
        unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
            // SAFETY: as above; GlobalAlloc's caller gives our block with its layout.
            unsafe { (*self.0.get()).dealloc(block, layout) }
        }

        #[inline(never)]
        unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: as for `dealloc`.
            unsafe { (*self.0.get()).realloc(block, layout, new_size) }
        }
    }

    #[global_allocator]
    static HEAP: Global = Global(UnsafeCell::new(Heap::new(WasmMemory)));

    // C's allocation functions, so that wasi-libc's dlmalloc stays out of the module (see
    // the module doc). `#[no_mangle]` exports them from a cdylib; scripts/optimize-wasm.sh
    // removes the exports. ENOMEM is not set on failure: nothing here reads `errno`.

    /// C's `malloc`.
    #[unsafe(no_mangle)]
    pub extern "C" fn malloc(size: usize) -> *mut u8 {
        // SAFETY: no other reference to the heap exists during the call (see `Sync`).
        unsafe { (*HEAP.0.get()).c_alloc(size, C_ALIGN) }
    }

    /// C's `aligned_alloc`.
    #[unsafe(no_mangle)]
    pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut u8 {
        // SAFETY: as for `malloc`.
        unsafe { (*HEAP.0.get()).c_alloc(size, align) }
    }

    /// C's `calloc`: zeroed, null when `count * size` overflows.
    #[unsafe(no_mangle)]
    pub extern "C" fn calloc(count: usize, size: usize) -> *mut u8 {
        let Some(bytes) = count.checked_mul(size) else {
            return core::ptr::null_mut();
        };
        let block = malloc(bytes);
        if !block.is_null() {
            // SAFETY: a live block of `bytes` bytes.
            unsafe { block.write_bytes(0, bytes) };
        }
        block
    }

    /// C's `realloc`.
    ///
    /// # Safety
    /// C's: `block` is null or from these functions, and not used after it is moved.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn realloc(block: *mut u8, size: usize) -> *mut u8 {
        // SAFETY: as for `malloc`; the caller's promise for `block`.
        unsafe { (*HEAP.0.get()).c_realloc(block, size) }
    }

    /// C's `free`.
    ///
    /// # Safety
    /// C's: `block` is null or from these functions, and not used again.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn free(block: *mut u8) {
        // SAFETY: as for `realloc`.
        unsafe { (*HEAP.0.get()).c_free(block) }
    }
}

#[cfg(test)]
mod tests;
