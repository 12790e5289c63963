use super::*;
use proptest::prelude::*;
use rstest::rstest;
use std::collections::BTreeMap;

/// Alignment of the arena's own memory: above any alignment the tests ask for.
const ARENA_ALIGN: usize = 1 << 20;

/// Test memory handed out in page multiples, `gap` bytes apart (0: contiguous, as the wasm
/// memory grows while nothing else grows it).
struct Arena {
    base: *mut u8,
    layout: Layout,
    used: usize,
    gap: usize,
    /// Bytes each region lacks at its end: a source whose lengths are not whole 8-byte units.
    cut: usize,
    /// The memory handed out, as (start, length) of each contiguous region.
    regions: Vec<(usize, usize)>,
}

impl Arena {
    fn new(capacity: usize, gap: usize) -> Self {
        let layout = Layout::from_size_align(capacity, ARENA_ALIGN).unwrap();
        // SAFETY: the layout's size is not zero.
        let base = unsafe { std::alloc::alloc(layout) };
        assert!(!base.is_null());
        Arena {
            base,
            layout,
            used: 0,
            gap,
            cut: 0,
            regions: Vec::new(),
        }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.base, self.layout) };
    }
}

// SAFETY: regions are disjoint pieces of the arena's own allocation, page-aligned.
unsafe impl Source for Arena {
    fn grow(&mut self, bytes: usize) -> Option<(usize, usize)> {
        let length = bytes.checked_next_multiple_of(PAGE)?;
        let offset = self.used.checked_add(self.gap)?;
        if offset.checked_add(length)? > self.layout.size() {
            return None;
        }
        self.used = offset + length;
        let length = length - self.cut;
        let start = self.base.expose_provenance() + offset;
        match self.regions.last_mut() {
            // Memory that continues the last region is one region: a block may span both.
            Some((last, last_length)) if *last + *last_length == start => *last_length += length,
            _ => self.regions.push((start, length)),
        }
        Some((start, length))
    }
}

/// A live block as the test wrote it.
struct Live {
    size: usize,
    align: usize,
    fill: u8,
}

/// Which of the heap's interfaces a [`Checked`] heap is used through.
#[derive(Clone, Copy, Debug)]
enum Interface {
    /// `alloc`, `dealloc`, `realloc`: Rust's, told each block's layout.
    Rust,
    /// `c_alloc`, `c_free`, `c_realloc`: C's, which are not.
    C,
}

/// A heap whose every block is checked: aligned, inside the arena's regions, overlapping
/// no live block, its contents (a fill byte) unchanged until freed.
struct Checked {
    heap: Heap<Arena>,
    interface: Interface,
    live: BTreeMap<usize, Live>,
    fills: u8,
}

impl Checked {
    fn new(capacity: usize, gap: usize) -> Self {
        Self::through(Interface::Rust, capacity, gap)
    }

    fn through(interface: Interface, capacity: usize, gap: usize) -> Self {
        Checked {
            heap: Heap::new(Arena::new(capacity, gap)),
            interface,
            live: BTreeMap::new(),
            fills: 0,
        }
    }

    fn alloc(&mut self, size: usize, align: usize) -> Option<usize> {
        let block = match self.interface {
            Interface::Rust => match Layout::from_size_align(size, align) {
                Ok(layout) => self.heap.alloc(layout),
                Err(_) => ptr::null_mut(),
            },
            Interface::C => self.heap.c_alloc(size, align),
        };
        (!block.is_null()).then(|| self.admit(block.expose_provenance(), size, align))
    }

    fn free(&mut self, block: usize) {
        let live = self.live.remove(&block).unwrap();
        assert_filled(block, live.size, live.fill);
        let layout = Layout::from_size_align(live.size, live.align).unwrap();
        let block = ptr::with_exposed_provenance_mut(block);
        // SAFETY: a live block of this heap with its layout.
        unsafe {
            match self.interface {
                Interface::Rust => self.heap.dealloc(block, layout),
                Interface::C => self.heap.c_free(block),
            }
        };
    }

    /// The block moved or resized to `new_size`; `None` (the block kept) when the heap says null.
    fn realloc(&mut self, block: usize, new_size: usize) -> Option<usize> {
        let live = self.live.remove(&block).unwrap();
        assert_filled(block, live.size, live.fill);
        let layout = Layout::from_size_align(live.size, live.align).unwrap();
        let old = ptr::with_exposed_provenance_mut(block);
        // SAFETY: a live block of this heap with its layout.
        let moved = unsafe {
            match self.interface {
                Interface::Rust => self.heap.realloc(old, layout, new_size),
                Interface::C => self.heap.c_realloc(old, new_size),
            }
        };
        if moved.is_null() {
            assert_filled(block, live.size, live.fill);
            self.live.insert(block, live);
            return None;
        }
        let moved = moved.expose_provenance();
        assert_filled(moved, live.size.min(new_size), live.fill);
        Some(self.admit(moved, new_size, live.align))
    }

    /// Checks a new block against the live ones, fills it with a fresh byte and records it.
    fn admit(&mut self, block: usize, size: usize, align: usize) -> usize {
        assert_eq!(block % align, 0, "block {block:#x} for align {align}");
        let end = block + size;
        assert!(
            self.heap
                .source
                .regions
                .iter()
                .any(|(start, length)| *start <= block && end <= start + length),
            "block {block:#x}..{end:#x} is outside the memory the heap was given"
        );
        if let Some((before, live)) = self.live.range(..block).next_back() {
            assert!(
                before + live.size <= block,
                "{block:#x} overlaps {before:#x}"
            );
        }
        if let Some((after, _)) = self.live.range(block..).next() {
            assert!(end <= *after, "{block:#x}..{end:#x} overlaps {after:#x}");
        }
        self.fills = self.fills.wrapping_add(1);
        // SAFETY: the heap's block of `size` bytes, checked above to be in its memory.
        unsafe { ptr::with_exposed_provenance_mut::<u8>(block).write_bytes(self.fills, size) };
        self.live.insert(
            block,
            Live {
                size,
                align,
                fill: self.fills,
            },
        );
        block
    }

    fn grown(&self) -> usize {
        self.heap.source.used
    }
}

fn assert_filled(block: usize, size: usize, fill: u8) {
    // SAFETY: a block the test filled, `size` bytes long.
    let bytes =
        unsafe { std::slice::from_raw_parts(ptr::with_exposed_provenance::<u8>(block), size) };
    assert!(
        bytes.iter().all(|byte| *byte == fill),
        "block {block:#x} lost its contents"
    );
}

const MIB: usize = 1 << 20;

#[test]
fn every_block_is_aligned_for_its_request() {
    let mut heap = Checked::new(64 * MIB, 0);
    let aligns: Vec<usize> = (0..=12).map(|shift| 1 << shift).chain([1 << 17]).collect();
    let sizes = [1, 7, 8, 24, 100, 4097, 70_000];
    let mut blocks = Vec::new();
    for align in &aligns {
        for size in sizes {
            blocks.push((heap.alloc(size, *align).unwrap(), size, *align));
        }
    }
    // Again from the free lists, each block freed and asked for in another order.
    for (block, _, _) in &blocks {
        heap.free(*block);
    }
    for (_, size, align) in blocks.iter().rev() {
        heap.alloc(*size, *align).unwrap();
    }
}

#[test]
fn a_listed_block_not_aligned_enough_is_not_handed_out() {
    let mut heap = Checked::new(8 * MIB, 0);
    heap.alloc(8, 8).unwrap();
    // A 256 KiB block is bumped aligned to a page only: the arena's start + 64 KiB.
    let paged = heap.alloc(256 * 1024, 8).unwrap();
    assert_ne!(paged % (256 * 1024), 0);
    heap.free(paged);
    let aligned = heap.alloc(256 * 1024, 256 * 1024).unwrap();
    assert_ne!(aligned, paged);
}

#[rstest]
#[case::smallest(8, 1)]
#[case::small(24, 17)]
#[case::odd(100, 97)]
#[case::largest_small(512, 505)]
#[case::pages(5000, 8192)]
#[case::above_a_page(70_000, 131_072)]
fn a_freed_block_serves_the_next_request_of_its_class(#[case] freed: usize, #[case] next: usize) {
    let mut heap = Checked::new(8 * MIB, 0);
    heap.alloc(8, 8).unwrap(); // the block is not the first of the memory
    let block = heap.alloc(freed, 8).unwrap();
    heap.alloc(freed, 8).unwrap();
    heap.free(block);
    assert_eq!(heap.alloc(next, 8), Some(block));
}

#[rstest]
#[case::same_class_grows(10, 16, true)]
#[case::same_class_shrinks(4000, 2049, true)]
#[case::grows_a_class(10, 17, false)]
#[case::grows_past_a_page(100, 70_000, false)]
#[case::shrinks_classes(70_000, 3, false)]
#[case::shrinks_a_class(5000, 100, false)]
fn realloc_keeps_the_contents(#[case] from: usize, #[case] to: usize, #[case] in_place: bool) {
    let mut heap = Checked::new(8 * MIB, 0);
    let block = heap.alloc(from, 8).unwrap();
    heap.alloc(8, 8).unwrap(); // so a move cannot land on the same address by chance
    let moved = heap.realloc(block, to).unwrap();
    assert_eq!(moved == block, in_place);
}

#[test]
fn out_of_memory_is_null_and_the_heap_still_works() {
    let mut heap = Checked::new(2 * MIB, 0);
    assert_eq!(heap.alloc(4 * MIB, 8), None);
    let blocks: Vec<usize> = std::iter::from_fn(|| heap.alloc(1000, 8)).collect();
    assert!(
        blocks.len() >= 2 * MIB / 1024 - 2,
        "{} blocks",
        blocks.len()
    );
    heap.free(blocks[0]);
    assert_eq!(heap.alloc(1000, 8), Some(blocks[0]));
    assert_eq!(heap.realloc(blocks[1], 3000), None);
}

#[rstest]
#[case::zero(0, 1)]
#[case::zero_aligned(0, 64)]
#[case::largest_layout(isize::MAX as usize, 1)]
#[case::largest_aligned(isize::MAX as usize - PAGE + 1, PAGE)]
fn impossible_requests_are_null(#[case] size: usize, #[case] align: usize) {
    let mut heap = Checked::new(2 * MIB, 0);
    assert_eq!(heap.alloc(size, align), None);
    assert!(heap.alloc(8, 8).is_some());
}

#[rstest]
#[case::zero(0)]
#[case::largest_layout(isize::MAX as usize)]
#[case::past_a_layout(isize::MAX as usize + 1)]
#[case::past_the_largest_power_of_two(isize::MAX as usize + 2)]
#[case::largest(usize::MAX)]
fn impossible_reallocs_are_null_and_keep_the_block(#[case] new_size: usize) {
    let mut heap = Checked::new(2 * MIB, 0);
    let block = heap.alloc(100, 8).unwrap();
    assert_eq!(heap.realloc(block, new_size), None);
    heap.free(block);
}

#[test]
fn the_rest_of_a_chunk_serves_later_requests_when_memory_is_not_contiguous() {
    let mut heap = Checked::new(8 * MIB, PAGE);
    heap.alloc(8, 8).unwrap();
    heap.alloc(CHUNK, 8).unwrap();
    let regions = heap.heap.source.regions.clone();
    assert_eq!(regions.len(), 2);
    let (first, length) = regions[0];
    let block = heap.alloc(256 * 1024, 8).unwrap();
    assert!(first <= block && block < first + length, "{block:#x}");
    assert_eq!(heap.heap.source.regions.len(), 2);
}

/// One step of a heap's user.
#[derive(Clone, Debug)]
enum Step {
    Alloc { size: usize, align: usize },
    Free(prop::sample::Index),
    Realloc(prop::sample::Index, usize),
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![1..64usize, 1..4096usize, 1..200_000usize]
}

fn steps(largest_align_shift: u32) -> impl Strategy<Value = Vec<Step>> {
    let align = (0..=largest_align_shift).prop_map(|shift| 1usize << shift);
    let step = prop_oneof![
        3 => (size(), align).prop_map(|(size, align)| Step::Alloc { size, align }),
        2 => any::<prop::sample::Index>().prop_map(Step::Free),
        2 => (any::<prop::sample::Index>(), size()).prop_map(|(at, size)| Step::Realloc(at, size)),
    ];
    prop::collection::vec(step, 1..120)
}

/// Runs the steps; a step on a live block picks one by index, and is skipped when none is.
fn run(heap: &mut Checked, steps: &[Step]) {
    let mut blocks: Vec<usize> = Vec::new();
    for step in steps {
        match step {
            Step::Alloc { size, align } => blocks.extend(heap.alloc(*size, *align)),
            Step::Free(at) if !blocks.is_empty() => {
                heap.free(blocks.swap_remove(at.index(blocks.len())));
            }
            Step::Realloc(at, size) if !blocks.is_empty() => {
                let at = at.index(blocks.len());
                if let Some(moved) = heap.realloc(blocks[at], *size) {
                    blocks[at] = moved;
                }
            }
            Step::Free(_) | Step::Realloc(..) => {}
        }
    }
}

proptest! {
    /// Any sequence, with aligns up to 2^17 and memory that may not be contiguous: every
    /// block aligned, inside the heap's memory, disjoint from the live ones, its contents
    /// kept across reallocs and until freed (`Checked` asserts each).
    #[test]
    fn any_sequence_keeps_blocks_aligned_disjoint_and_intact(
        steps in steps(17),
        gap in prop_oneof![Just(0), Just(3 * PAGE)],
        interface in prop_oneof![Just(Interface::Rust), Just(Interface::C)],
    ) {
        run(&mut Checked::through(interface, 64 * MIB, gap), &steps);
    }

    /// The same sequence again, after everything was freed, grows no memory: the heap of
    /// a `validate` call repeated stays flat.
    #[test]
    fn a_repeated_sequence_grows_no_memory(steps in steps(12)) {
        let mut heap = Checked::new(64 * MIB, 0);
        run(&mut heap, &steps);
        let grown = heap.grown();
        let live: Vec<usize> = heap.live.keys().copied().collect();
        for block in live {
            heap.free(block);
        }
        run(&mut heap, &steps);
        prop_assert_eq!(heap.grown(), grown);
    }
}

#[rstest]
#[case::grain(8, 8)]
#[case::small(24, 24)]
#[case::rounded_to_the_grain(100, 104)]
#[case::largest_small(512, 512)]
#[case::above_small_a_power_of_two(520, 1024)]
fn new_blocks_take_their_class_size(#[case] size: usize, #[case] step: usize) {
    let mut heap = Checked::new(8 * MIB, 0);
    let first = heap.alloc(size, 8).unwrap();
    assert_eq!(heap.alloc(size, 8), Some(first + step));
}

/// A source whose regions end on an odd byte: the heap uses whole 8-byte units of them
/// only, so no block, handed out or listed free (its link word), reaches past a region.
#[test]
fn a_region_of_odd_length_is_used_to_its_last_whole_unit_only() {
    // Regions a page apart, so each chunk's rest is cut into free blocks.
    let mut heap = Checked::new(4 * CHUNK + 4 * PAGE, PAGE);
    heap.heap.source.cut = 5;
    // `admit` checks each block handed out against the regions.
    while heap.alloc(8, 8).is_some() {}
    let regions = &heap.heap.source.regions;
    assert!(regions.len() >= 2, "the test needs a chunk's rest released");
    for head in heap.heap.free {
        let mut block = head;
        while block != 0 {
            assert!(
                block % GRAIN == 0
                    && regions
                        .iter()
                        .any(|(start, length)| block >= *start && block + GRAIN <= start + length),
                "listed block {block:#x} reaches past its region"
            );
            // SAFETY: a listed block's first word is its link (the heap's own layout).
            block = unsafe { ptr::with_exposed_provenance::<usize>(block).read() };
        }
    }
}

/// C's blocks: aligned to `max_align_t` (16) whatever their size, a freed one serves the
/// next request of its size, `free(NULL)` does nothing.
#[rstest]
#[case::empty(0)]
#[case::small(1)]
#[case::odd(37)]
#[case::past_a_page(70_000)]
fn c_blocks_are_aligned_and_reused(#[case] size: usize) {
    let mut heap = Checked::through(Interface::C, 8 * MIB, 0);
    let block = heap.alloc(size, 1).unwrap();
    assert_eq!(block % C_ALIGN, 0);
    heap.alloc(8, 1).unwrap();
    heap.free(block);
    // SAFETY: null, which `free` ignores.
    unsafe { heap.heap.c_free(ptr::null_mut()) };
    assert_eq!(heap.alloc(size, 1), Some(block));
}

/// `aligned_alloc` with an alignment above C's, up to more than a page.
#[rstest]
#[case(32)]
#[case(4096)]
#[case(2 * PAGE)]
fn c_blocks_take_a_larger_alignment(#[case] align: usize) {
    let mut heap = Checked::through(Interface::C, 8 * MIB, 0);
    heap.alloc(24, 1).unwrap();
    // `Checked` asserts the alignment; the realloc keeps it and the contents.
    let block = heap.alloc(100, align).unwrap();
    heap.realloc(block, 5000).unwrap();
}

/// C's `realloc` of null is `malloc`; a block grown or shrunk keeps its contents (which
/// `Checked` asserts).
#[rstest]
#[case::grows(10, 3000)]
#[case::shrinks(3000, 10)]
#[case::to_nothing(100, 0)]
fn c_realloc_keeps_the_contents(#[case] from: usize, #[case] to: usize) {
    let mut heap = Checked::through(Interface::C, 8 * MIB, 0);
    // SAFETY: null is allowed.
    let block = unsafe { heap.heap.c_realloc(ptr::null_mut(), from) };
    assert!(!block.is_null() && block.expose_provenance() % C_ALIGN == 0);
    let block = heap.admit(block.expose_provenance(), from, 1);
    heap.realloc(block, to).unwrap();
}

/// What C's functions cannot give: null, the block kept, and the heap still works.
#[rstest]
#[case::largest(usize::MAX)]
#[case::past_a_layout(isize::MAX as usize)]
#[case::out_of_memory(16 * MIB)]
fn c_impossible_requests_are_null(#[case] size: usize) {
    let mut heap = Checked::through(Interface::C, 8 * MIB, 0);
    let kept = heap.alloc(100, 1).unwrap();
    assert_eq!(heap.alloc(size, 1), None);
    assert_eq!(heap.realloc(kept, size), None);
    heap.free(kept);
}

/// `aligned_alloc` with an alignment that is not a power of two: null.
#[test]
fn c_alignment_not_a_power_of_two_is_null() {
    let mut heap = Checked::through(Interface::C, 8 * MIB, 0);
    assert_eq!(heap.alloc(100, 48), None);
    assert!(heap.alloc(100, 64).is_some());
}
