//! Top-K with ties broken as `torch.topk(largest=True, sorted=True)` breaks them on the CPU.
//!
//! The reference leaves the order of exactly equal candidates to `torch.topk`
//! (reference-semantics §11 item 17). On the CPU, PyTorch pairs every value with its index
//! and runs the C++ standard library's selection on them (GCC's libstdc++ on Linux wheels),
//! with one comparator: `a` ranks before `b` iff `a` is NaN and `b` is not, or `a > b`.
//! Equal values are thus left in whatever order the algorithm leaves them:
//!
//! - `k · 64 ≤ n`: `std::partial_sort` (a heap of the first K, each later entry that ranks
//!   before the heap's worst replaces it, then the heap is sorted);
//! - otherwise: `std::nth_element` at `k − 1` (introselect), then `std::sort` of the first
//!   `k − 1` entries (introsort).
//!
//! This module replays those algorithms step for step, so equal candidates come out in the
//! same order as from PyTorch on the CPU (checked against torch 2.15 by the fixture
//! `tests/data/topk_torch_cpu.json`). On CUDA, PyTorch uses a radix selection whose tie
//! order is not specified; [`TieOrder::LowerIndex`](super::TieOrder) is the documented rule
//! for that case.

/// A candidate: value and flat index.
type Entry = (f32, u32);

/// PyTorch's comparator for `largest = true`: `a` ranks before `b`.
#[inline]
fn ranks_before(a: Entry, b: Entry) -> bool {
    (a.0.is_nan() && !b.0.is_nan()) || a.0 > b.0
}

/// The K best of `candidates` (flat indices = positions) in the order `torch.topk` returns
/// them on the CPU. `k` is clamped to the number of candidates.
pub fn select_top_k_torch_cpu(candidates: &[f32], k: usize) -> Vec<Entry> {
    let n = candidates.len();
    let k = k.min(n);
    if k == 0 {
        return Vec::new();
    }
    if k * 64 <= n {
        let mut heap = TorchHeapTopK::new(k);
        for (index, &value) in candidates.iter().enumerate() {
            heap.offer(value, index as u32);
        }
        return heap.into_sorted();
    }
    let mut queue: Vec<Entry> = candidates
        .iter()
        .enumerate()
        .map(|(index, &value)| (value, index as u32))
        .collect();
    nth_element(&mut queue, k - 1);
    sort(&mut queue[..k - 1]);
    queue.truncate(k);
    queue
}

/// Whether `torch.topk` takes the heap (`partial_sort`) path for `k` of `n` candidates; only
/// then can the candidates be streamed through [`TorchHeapTopK`].
pub fn torch_cpu_uses_heap(k: usize, n: usize) -> bool {
    k * 64 <= n
}

/// `std::partial_sort` fed one candidate at a time, in increasing flat index order: the heap
/// path of `torch.topk` on the CPU without materializing the candidates.
#[derive(Debug, Clone)]
pub struct TorchHeapTopK {
    capacity: usize,
    heap: Vec<Entry>,
    /// Value of the heap's worst entry once full (`+∞` before): anything `<=` it is rejected
    /// with one comparison (NaN compares false and takes the exact test).
    worst: f32,
}

impl TorchHeapTopK {
    /// An empty selector for the best `capacity` candidates.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            heap: Vec::with_capacity(capacity),
            worst: f32::INFINITY,
        }
    }

    /// Forget all candidates, keeping the capacity.
    pub fn clear(&mut self) {
        self.heap.clear();
        self.worst = f32::INFINITY;
    }

    /// Offer the next candidate (indices must increase from call to call).
    #[inline]
    pub fn offer(&mut self, value: f32, flat_index: u32) {
        // Not NaN and not above the worst: cannot rank before it (the full heap's usual case).
        if value <= self.worst && self.heap.len() == self.capacity {
            return;
        }
        self.insert((value, flat_index));
    }

    #[cold]
    fn insert(&mut self, entry: Entry) {
        if self.heap.len() < self.capacity {
            self.heap.push(entry);
            if self.heap.len() == self.capacity {
                make_heap(&mut self.heap);
                self.worst = self.heap[0].0;
            }
        } else if self.capacity > 0 && ranks_before(entry, self.heap[0]) {
            // `__pop_heap(first, middle, i)`: the heap's worst leaves, the new entry sifts in.
            adjust_heap(&mut self.heap, 0, entry);
            self.worst = self.heap[0].0;
        }
    }

    /// Offer a row of candidates `base + w: score + logp[w]`, summed in f32 like the reference.
    #[inline]
    pub fn offer_row(&mut self, logp_row: &[f32], score: f32, base: u32) {
        for (w, &logp) in logp_row.iter().enumerate() {
            self.offer(logp + score, base + w as u32);
        }
    }

    /// The selected entries in `torch.topk` order (sorts a copy; the selector stays usable).
    pub fn sorted(&self) -> Vec<Entry> {
        self.clone().into_sorted()
    }

    fn into_sorted(mut self) -> Vec<Entry> {
        if self.heap.len() < self.capacity {
            // Fewer candidates than K: `partial_sort` made a heap of all of them.
            make_heap(&mut self.heap);
        }
        sort_heap(&mut self.heap);
        self.heap
    }
}

/// libstdc++ `__push_heap`: move `value` up from `hole` while its parent ranks after it.
fn push_heap(heap: &mut [Entry], mut hole: usize, top: usize, value: Entry) {
    while hole > top {
        let parent = (hole - 1) / 2;
        if !ranks_before(heap[parent], value) {
            break;
        }
        heap[hole] = heap[parent];
        hole = parent;
    }
    heap[hole] = value;
}

/// libstdc++ `__adjust_heap` over the whole slice: sift the hole at `hole` down to a leaf
/// (always taking the child that ranks later, the right one on a tie), then push `value` up.
fn adjust_heap(heap: &mut [Entry], hole: usize, value: Entry) {
    let len = heap.len();
    let top = hole;
    let mut hole = hole;
    let mut child = hole;
    while child < (len - 1) / 2 {
        child = 2 * (child + 1);
        if ranks_before(heap[child], heap[child - 1]) {
            child -= 1;
        }
        heap[hole] = heap[child];
        hole = child;
    }
    if len.is_multiple_of(2) && child == (len - 2) / 2 {
        child = 2 * (child + 1);
        heap[hole] = heap[child - 1];
        hole = child - 1;
    }
    push_heap(heap, hole, top, value);
}

/// libstdc++ `__make_heap`.
fn make_heap(heap: &mut [Entry]) {
    let len = heap.len();
    if len < 2 {
        return;
    }
    let mut parent = (len - 2) / 2;
    loop {
        let value = heap[parent];
        adjust_heap(heap, parent, value);
        if parent == 0 {
            return;
        }
        parent -= 1;
    }
}

/// libstdc++ `__sort_heap`: repeatedly move the heap's worst to the end.
fn sort_heap(heap: &mut [Entry]) {
    let mut last = heap.len();
    while last > 1 {
        last -= 1;
        let value = heap[last];
        heap[last] = heap[0];
        adjust_heap(&mut heap[..last], 0, value);
    }
}

/// libstdc++ `__heap_select(first, first + middle, last)`.
fn heap_select(v: &mut [Entry], middle: usize) {
    make_heap(&mut v[..middle]);
    for i in middle..v.len() {
        if ranks_before(v[i], v[0]) {
            let value = v[i];
            v[i] = v[0];
            adjust_heap(&mut v[..middle], 0, value);
        }
    }
}

/// `floor(log2(n))` for n ≥ 1 (libstdc++ `__lg`).
fn lg(n: usize) -> usize {
    (usize::BITS - 1 - n.leading_zeros()) as usize
}

/// `std::nth_element(v.begin(), v.begin() + nth, v.end())`: libstdc++'s introselect.
fn nth_element(v: &mut [Entry], nth: usize) {
    if v.is_empty() || nth >= v.len() {
        return;
    }
    let (mut first, mut last) = (0, v.len());
    let mut depth = 2 * lg(v.len());
    while last - first > 3 {
        if depth == 0 {
            heap_select(&mut v[first..last], nth + 1 - first);
            v.swap(first, nth);
            return;
        }
        depth -= 1;
        let cut = partition_around_median(v, first, last);
        if cut <= nth {
            first = cut;
        } else {
            last = cut;
        }
    }
    insertion_sort(v, first, last);
}

/// `std::sort`: libstdc++'s introsort, then its final insertion sort.
fn sort(v: &mut [Entry]) {
    let n = v.len();
    if n < 2 {
        return;
    }
    introsort_loop(v, 0, n, 2 * lg(n));
    if n > 16 {
        insertion_sort(v, 0, 16);
        for i in 16..n {
            linear_insert(v, i);
        }
    } else {
        insertion_sort(v, 0, n);
    }
}

fn introsort_loop(v: &mut [Entry], first: usize, mut last: usize, mut depth: usize) {
    while last - first > 16 {
        if depth == 0 {
            let range = &mut v[first..last];
            let len = range.len();
            heap_select(range, len);
            sort_heap(range);
            return;
        }
        depth -= 1;
        let cut = partition_around_median(v, first, last);
        introsort_loop(v, cut, last, depth);
        last = cut;
    }
}

/// libstdc++ `__unguarded_partition_pivot`: median of (first + 1, middle, last − 1) moved to
/// `first`, then Hoare's partition of `first + 1 .. last` around it.
fn partition_around_median(v: &mut [Entry], first: usize, last: usize) -> usize {
    let middle = first + (last - first) / 2;
    let (a, b, c) = (first + 1, middle, last - 1);
    let median = if ranks_before(v[a], v[b]) {
        if ranks_before(v[b], v[c]) {
            b
        } else if ranks_before(v[a], v[c]) {
            c
        } else {
            a
        }
    } else if ranks_before(v[a], v[c]) {
        a
    } else if ranks_before(v[b], v[c]) {
        c
    } else {
        b
    };
    v.swap(first, median);
    let pivot = v[first];
    let (mut lo, mut hi) = (first + 1, last);
    loop {
        while ranks_before(v[lo], pivot) {
            lo += 1;
        }
        hi -= 1;
        while ranks_before(pivot, v[hi]) {
            hi -= 1;
        }
        if lo >= hi {
            return lo;
        }
        v.swap(lo, hi);
        lo += 1;
    }
}

/// libstdc++ `__insertion_sort` of `first .. last`.
fn insertion_sort(v: &mut [Entry], first: usize, last: usize) {
    if first == last {
        return;
    }
    for i in first + 1..last {
        if ranks_before(v[i], v[first]) {
            let value = v[i];
            v.copy_within(first..i, first + 1);
            v[first] = value;
        } else {
            linear_insert(v, i);
        }
    }
}

/// libstdc++ `__unguarded_linear_insert`: move `v[last]` left past every entry it ranks
/// before (an entry that does not stop it always exists to its left where it is called).
fn linear_insert(v: &mut [Entry], mut last: usize) {
    let value = v[last];
    while last > 0 && ranks_before(value, v[last - 1]) {
        v[last] = v[last - 1];
        last -= 1;
    }
    v[last] = value;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indices(entries: &[Entry]) -> Vec<u32> {
        entries.iter().map(|e| e.1).collect()
    }

    #[test]
    fn distinct_values_come_out_sorted_on_both_paths() {
        let values: Vec<f32> = (0..700).map(|i| ((i * 7919) % 701) as f32).collect();
        for k in [1, 3, 10, 11, 12, 40] {
            let top = select_top_k_torch_cpu(&values, k);
            let mut expected: Vec<Entry> = values
                .iter()
                .enumerate()
                .map(|(i, &v)| (v, i as u32))
                .collect();
            expected.sort_by(|a, b| b.0.total_cmp(&a.0));
            assert_eq!(top, expected[..k].to_vec(), "k {k}");
        }
    }

    #[test]
    fn heap_path_keeps_the_first_of_equal_values_at_the_boundary() {
        // 128 candidates, K 2: the heap path. The later 5.0 does not rank before the earlier.
        let mut values = vec![0.0f32; 128];
        values[3] = 5.0;
        values[100] = 5.0;
        values[50] = 7.0;
        assert_eq!(indices(&select_top_k_torch_cpu(&values, 2)), vec![50, 3]);
    }

    #[test]
    fn nan_ranks_first_and_negative_zero_equals_zero() {
        let values = [-0.0f32, 0.0, f32::NAN, -3.0, f32::INFINITY];
        let top = select_top_k_torch_cpu(&values, 5);
        assert!(top[0].0.is_nan());
        assert_eq!(top[1].0, f32::INFINITY);
        assert_eq!(indices(&top[4..]), vec![3]);
    }

    #[test]
    fn streaming_heap_equals_materialized_heap_path() {
        let values: Vec<f32> = (0..1000).map(|i| ((i * 37) % 9) as f32 * 0.5).collect();
        let mut heap = TorchHeapTopK::new(10);
        heap.offer_row(&values[..500], 0.0, 0);
        heap.offer_row(&values[500..], 0.0, 500);
        assert_eq!(heap.sorted(), select_top_k_torch_cpu(&values, 10));
        assert!(torch_cpu_uses_heap(10, 1000) && !torch_cpu_uses_heap(10, 639));
    }
}
