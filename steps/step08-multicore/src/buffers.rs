//! Provided buffers: one pool of receive buffers per ring, which the kernel picks from when
//! data arrives, instead of one buffer per connection waiting in every receive.
//!
//! In step07 every connection lent the kernel its own 4 KiB line buffer with each receive,
//! and an idle connection kept it lent, unused, for as long as it stayed idle. Here a receive
//! names a buffer *group* instead of a buffer: when bytes arrive, the kernel takes the next
//! buffer from the group's ring, fills it, and says which one in the completion
//! ([`io_uring::cqueue::buffer_select`]). We read the bytes out and give the buffer back at
//! once. Memory for reading now grows with the data in flight, not with the connections:
//! 10,000 idle connections cost no receive buffers at all.
//!
//! The ring of buffers is shared memory like the submission queue: an array of descriptors
//! (address, length, id) that we fill and the kernel consumes, and a tail index that we
//! advance to publish new ones. The kernel's head is its own.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use step07::ring::Ring;

/// The kernel wants the descriptor array page-aligned.
#[repr(C, align(4096))]
#[derive(Clone, Copy)]
struct Page([u8; 4096]);

/// A ring of provided buffers registered with one io_uring under a group id.
///
/// Each buffer is, at any moment, either the kernel's (in the ring, or being filled) or ours
/// (named by a completion, until [`give_back`](Self::give_back)).
pub struct BufferRing {
    /// The descriptor array's memory; only ever accessed through `descriptors`.
    pages: Box<[Page]>,
    /// The descriptors (the kernel's `struct io_uring_buf`); the last two bytes of the first
    /// are the ring's tail (`struct io_uring_buf_ring`).
    descriptors: *mut BufRingEntry,
    buffers: Vec<Box<[u8]>>,
    group: u16,
    /// Our copy of the tail: where the next descriptor goes.
    tail: u16,
}

impl BufferRing {
    /// Allocates `count` buffers of `size` bytes (`count` a power of two), registers them
    /// with `ring` as group `group`, and provides them all.
    ///
    /// # Errors
    ///
    /// When the kernel refuses the registration (Linux before 5.19).
    pub fn register(ring: &Ring, group: u16, count: u16, size: usize) -> io::Result<BufferRing> {
        assert!(
            count.is_power_of_two(),
            "a buffer ring's size is a power of two"
        );
        let bytes = usize::from(count) * size_of::<BufRingEntry>();
        let mut pages = vec![Page([0; 4096]); bytes.div_ceil(size_of::<Page>())].into_boxed_slice();
        let descriptors = pages.as_mut_ptr().cast::<BufRingEntry>();
        // SAFETY: the descriptor array is `count` descriptors of page-aligned, zeroed memory
        // owned by the BufferRing, never resized; it is freed only after the registration
        // ends (the event loop unregisters it, or destroys the ring, before dropping this).
        unsafe {
            ring.io_uring().submitter().register_buf_ring_with_flags(
                descriptors as u64,
                count,
                group,
                0,
            )?;
        }
        let mut buffer_ring = BufferRing {
            pages,
            descriptors,
            buffers: (0..count)
                .map(|_| vec![0; size].into_boxed_slice())
                .collect(),
            group,
            tail: 0,
        };
        for id in 0..count {
            buffer_ring.give_back(id);
        }
        Ok(buffer_ring)
    }

    /// The group id receives name to take their buffers from this ring.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// The first `len` bytes of buffer `id`, which a completion has just handed to us.
    pub fn data(&self, id: u16, len: usize) -> &[u8] {
        &self.buffers[usize::from(id)][..len]
    }

    // ANCHOR: give_back
    /// Puts buffer `id` back in the ring: the kernel may fill it again.
    pub fn give_back(&mut self, id: u16) {
        let mask = self.buffers.len() - 1;
        let buffer = &mut self.buffers[usize::from(id)];
        let index = usize::from(self.tail) & mask;
        // SAFETY: `index` is within the `count` descriptors of the array. The slot at the
        // tail is not published yet, so the kernel does not read it while we write; the
        // setters write their own field each (never the fourth, which in slot 0 is the tail).
        let slot = unsafe { &mut *self.descriptors.add(index) };
        slot.set_addr(buffer.as_mut_ptr() as u64);
        slot.set_len(buffer.len() as u32);
        slot.set_bid(id);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail is the aligned u16 at the end of the first descriptor, in memory
        // we own; the kernel only reads it. The release store publishes the slot written
        // above before the kernel can see the new tail.
        unsafe {
            let tail = BufRingEntry::tail(self.descriptors).cast_mut();
            AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
        }
    }
    // ANCHOR_END: give_back

    /// Ends the registration, so that the buffers may be freed; call it once no receive is
    /// in flight. If the kernel refuses, the memory is leaked rather than freed under it.
    pub fn release(&mut self, ring: &Ring) {
        if ring
            .io_uring()
            .submitter()
            .unregister_buf_ring(self.group)
            .is_err()
        {
            self.leak();
        }
    }

    /// Gives up the memory without freeing it: the kernel may still write to it.
    pub fn leak(&mut self) {
        std::mem::forget(std::mem::take(&mut self.buffers));
        std::mem::forget(std::mem::take(&mut self.pages));
    }
}

impl fmt::Debug for BufferRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferRing")
            .field("group", &self.group)
            .field("buffers", &self.buffers.len())
            .field("tail", &self.tail)
            .finish()
    }
}
