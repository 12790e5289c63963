//! The policy's heap on wasm32: power-of-two size classes, one free list per class, new
//! blocks bumped from chunks the wasm memory grows by.
//!
//! Why our own: a `validate` builds and writes JSON in many small blocks and frees them all
//! before it returns; wasi-libc's dlmalloc (the target's default allocator) spends a large
//! part of that work on splitting, merging and bookkeeping (issue 24's profile). Here an
//! allocation is a list pop or a pointer bump, a free a list push, and the next call reuses
//! the blocks the last one freed.
//!
//! A request of `size` bytes aligned to `align` gets a block of its class: the next power of
//! two of `max(size, align, 8)`. A freed block goes onto its class's list (its first word
//! links the next) and serves the next request of that class; blocks are never split,
//! merged nor given back (a wasm memory cannot shrink). New blocks are bumped at an
//! address aligned to `min(class, PAGE)` (or to `align` when larger), so every block of a
//! class is aligned for every request of it; an alignment gap, and the rest of a chunk
//! that the next grown memory does not continue, are cut into aligned blocks on the free
//! lists, not lost. The memory is grown by at least [`CHUNK`] at a time.
//!
//! Bound: a live block of `n` bytes takes less than `2n` (at least 8 B), and the blocks of
//! a class number at most the most that were live at once, plus the gap blocks; so the
//! heap is at most twice the sum, over the classes, of each class's peak of live bytes,
//! plus one chunk. A call repeated with the same input allocates the same classes, and
//! the memory stops growing after the first calls.
//!
//! The core ([`Heap`]) works over any [`Source`] of memory, so its tests run natively on
//! an arena; on wasm32 the source is `memory.grow` and the heap is the global allocator.

use core::alloc::Layout;
use core::ptr;

/// The smallest class, 2^3 = 8 B: room for the free list's link on every target.
const MIN_SHIFT: u32 = 3;
/// One class per power of two a `usize` can hold (the first [`MIN_SHIFT`] stay empty).
const CLASSES: usize = usize::BITS as usize;
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
    /// The first free block of each class (indexed by the class's shift), 0 when none.
    free: [usize; CLASSES],
    /// Where the next new block may start.
    next: usize,
    /// The end of the memory `next` bumps through.
    end: usize,
    /// Where more memory comes from.
    source: S,
}

/// The class (a power of two's shift) of a request, or `None` for a zero size or one
/// whose class a `usize` cannot hold.
fn class_of(size: usize, align: usize) -> Option<u32> {
    if size == 0 {
        return None;
    }
    let block = size.max(align).max(1 << MIN_SHIFT);
    block.checked_next_power_of_two().map(usize::trailing_zeros)
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
        let Some(shift) = class_of(layout.size(), layout.align()) else {
            return ptr::null_mut();
        };
        let block = self
            .pop(shift, layout.align())
            .or_else(|| self.bump(shift, layout.align()));
        block.map_or(ptr::null_mut(), ptr::with_exposed_provenance_mut)
    }

    /// Frees a block.
    ///
    /// # Safety
    /// `block` came from this heap's `alloc` or `realloc` with this `layout` (its size the
    /// last one asked for) and is not used again.
    pub unsafe fn dealloc(&mut self, block: *mut u8, layout: Layout) {
        if let Some(shift) = class_of(layout.size(), layout.align()) {
            // SAFETY: the caller gives the block back; it is at least 8 B of its class.
            unsafe { self.push(shift, block.expose_provenance()) };
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

    /// The first free block of a class, if it is aligned enough (a block bumped for a
    /// smaller alignment than a request above a page asks for is left on its list).
    fn pop(&mut self, shift: u32, align: usize) -> Option<usize> {
        let head = self.free.get_mut(shift as usize)?;
        if *head == 0 || *head & (align - 1) != 0 {
            return None;
        }
        let block = *head;
        // SAFETY: a listed block is free heap memory whose first word `push` wrote.
        *head = unsafe { ptr::with_exposed_provenance::<usize>(block).read() };
        Some(block)
    }

    /// Puts a free block of `1 << shift` bytes on its class's list.
    ///
    /// # Safety
    /// `block` is free heap memory of at least 8 bytes, aligned to 8.
    unsafe fn push(&mut self, shift: u32, block: usize) {
        if let Some(head) = self.free.get_mut(shift as usize) {
            // SAFETY: the caller's promise; the link is the block's first word.
            unsafe { ptr::with_exposed_provenance_mut::<usize>(block).write(*head) };
            *head = block;
        }
    }

    /// A new block of the class, bumped from the chunk, which grows when it is too short.
    fn bump(&mut self, shift: u32, align: usize) -> Option<usize> {
        let size = 1usize.checked_shl(shift)?;
        let block_align = align.max(size.min(PAGE));
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
        let end = start.checked_add(length)?;
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
            let shift = from.trailing_zeros().min(rest.ilog2());
            // SAFETY: `from..to` is heap memory no block uses; `from` is aligned to the
            // block, which is at least 8 B since both ends are multiples of 8.
            unsafe { self.push(shift, from) };
            from += 1 << shift;
        }
    }
}

/// The global allocator of the wasm module.
#[cfg(target_arch = "wasm32")]
mod wasm {
    use super::{Heap, PAGE, Source};
    use core::alloc::{GlobalAlloc, Layout};
    use core::cell::UnsafeCell;

    /// The module's linear memory, grown a page at a time.
    struct WasmMemory;

    // SAFETY: `memory.grow` hands out fresh, zeroed, page-aligned pages that nothing else
    // uses (wasi-libc's own malloc grows the memory too, but gets other pages).
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
}

#[cfg(test)]
mod tests;
