//! Memory the kernel writes into: a raw allocation, reachable by no Rust reference while the
//! kernel may be writing it.
//!
//! A receive hands the kernel a pointer, and the kernel writes through it later, while our
//! code runs. Rust's rules say that while a `&mut` (or a `Box`, which is unique too) is live,
//! nothing else writes the memory behind it, and the compiler may rely on that. A buffer the
//! kernel writes therefore cannot be a `Box<[u8]>` or a `Vec<u8>` field of a connection that
//! our code borrows mutably (every completion does) while a receive is in flight. It is an
//! allocation known only by a raw pointer, and a `&[u8]` of it is made only once a completion
//! says that the kernel is done with it ([`KernelBuffer::bytes`]).

use std::alloc::{self, Layout};
use std::fmt;
use std::ops::Range;
use std::ptr::NonNull;

/// `len` bytes of heap memory that the kernel may write while we hold no reference to them.
pub struct KernelBuffer {
    start: NonNull<u8>,
    len: usize,
    /// How it was allocated; `None` for an empty buffer, which owns no memory.
    layout: Option<Layout>,
}

impl KernelBuffer {
    /// `len` zeroed bytes, starting at a multiple of `align` (a power of two; the kernel
    /// wants some memory page-aligned).
    ///
    /// # Panics
    ///
    /// When `align` is not a power of two or `len` is absurdly large, which is a bug.
    pub fn new(len: usize, align: usize) -> KernelBuffer {
        if len == 0 {
            return KernelBuffer::empty();
        }
        let layout = Layout::from_size_align(len, align).expect("a valid size and alignment");
        // SAFETY: the layout's size is not zero (checked above).
        let start = unsafe { alloc::alloc_zeroed(layout) };
        let start = NonNull::new(start).unwrap_or_else(|| alloc::handle_alloc_error(layout));
        KernelBuffer {
            start,
            len,
            layout: Some(layout),
        }
    }

    /// A buffer of no bytes, which allocates nothing: what a buffer leaves behind when it is
    /// taken out of a struct for a moment (`std::mem::take`).
    pub const fn empty() -> KernelBuffer {
        KernelBuffer {
            start: NonNull::dangling(),
            len: 0,
            layout: None,
        }
    }

    /// The buffer's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The start of the buffer, to hand to the kernel. A raw pointer, made without a
    /// reference: handing it out asserts nothing about who else uses the memory.
    pub fn as_ptr(&self) -> *mut u8 {
        self.start.as_ptr()
    }

    /// The bytes in `range`, to read what the kernel wrote.
    ///
    /// # Safety
    ///
    /// Nothing may write to `range` while the returned slice lives: every operation that
    /// the kernel may write it with has completed (its completion has arrived), and none is
    /// submitted until the slice is gone.
    ///
    /// # Panics
    ///
    /// When `range` is not inside the buffer.
    pub unsafe fn bytes(&self, range: Range<usize>) -> &[u8] {
        assert!(
            range.start <= range.end && range.end <= self.len,
            "{range:?} is not inside a buffer of {} bytes",
            self.len
        );
        // SAFETY: `range` is inside the allocation (checked above), which is initialised
        // (zeroed when allocated, then written only by the kernel) and lives as long as
        // `self`; our caller promises that nothing writes it meanwhile.
        unsafe { std::slice::from_raw_parts(self.start.as_ptr().add(range.start), range.len()) }
    }

    /// Gives the memory up without freeing it: for when the kernel may still write to it
    /// and will not say when it is done.
    pub fn leak(self) {
        std::mem::forget(self);
    }
}

impl Default for KernelBuffer {
    fn default() -> Self {
        KernelBuffer::empty()
    }
}

impl Drop for KernelBuffer {
    fn drop(&mut self) {
        if let Some(layout) = self.layout {
            // SAFETY: allocated in `new` with this layout, and freed only here, once.
            unsafe { alloc::dealloc(self.start.as_ptr(), layout) };
        }
    }
}

// SAFETY: a KernelBuffer owns its memory alone, like a `Box<[u8]>`, and nothing about it is
// tied to the thread that made it; a thread it is sent to uses it under the same rules.
unsafe impl Send for KernelBuffer {}

impl fmt::Debug for KernelBuffer {
    /// The length only: the bytes may be the kernel's, being written, at any moment.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelBuffer")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_is_zeroed_aligned_and_readable() {
        let buffer = KernelBuffer::new(8192, 4096);
        assert_eq!(buffer.len(), 8192);
        assert_eq!(buffer.as_ptr() as usize % 4096, 0);
        // SAFETY: no operation writes this buffer.
        assert!(unsafe { buffer.bytes(0..8192) }.iter().all(|&b| b == 0));
        let empty = KernelBuffer::empty();
        assert!(empty.is_empty());
        // SAFETY: as above.
        assert_eq!(unsafe { empty.bytes(0..0) }, b"");
    }
}
