//! Provided buffers: one pool of receive buffers per ring, which the kernel picks from when
//! data arrives, instead of one buffer per connection waiting in every receive.
//!
//! In step07 every connection lent the kernel its own 4 KiB input buffer with each receive,
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
use std::os::fd::{AsFd, AsRawFd, IntoRawFd};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;
use io_uring::types::BufRingEntry;
use step07::kernel_buffer::KernelBuffer;
use step07::ring::Ring;

/// The kernel wants the descriptor array page-aligned.
const PAGE: usize = 4096;

/// A ring of provided buffers registered with one io_uring under a group id.
///
/// Each buffer is, at any moment, either the kernel's (published in the ring, or being
/// filled) or ours (named by a completion, until [`give_back`](Self::give_back)).
pub struct BufferRing {
    /// A handle of our own on the io_uring the buffers are registered with: a duplicate of
    /// its descriptor, mapped again. The registration is made and ended through it, so this
    /// ring of buffers ends its registration itself, when it drops, and the io_uring lives
    /// at least until then.
    owner: IoUring,
    /// The descriptors (the kernel's `struct io_uring_buf`, `count` of them); the last two
    /// bytes of the first are the ring's tail (`struct io_uring_buf_ring`). The kernel reads
    /// them; we write them only through raw pointers.
    descriptors: KernelBuffer,
    /// The buffers, `count` of `size` bytes in one allocation. The kernel writes them.
    memory: KernelBuffer,
    size: usize,
    /// Which buffers are ours (named by a completion and not given back yet).
    ours: Vec<bool>,
    group: u16,
    /// Our copy of the tail: where the next descriptor goes.
    tail: u16,
    /// The kernel may still use the memory and will not say when it stops (see
    /// [`leak`](Self::leak)).
    leaked: bool,
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
        let ring = ring.io_uring();
        let descriptor = ring.as_fd().try_clone_to_owned()?;
        // SAFETY: `descriptor` is ours (just duplicated, given away here) and refers to an
        // io_uring, whose parameters are the ones the kernel filled in when it was set up.
        let owner = unsafe { IoUring::from_fd(descriptor.into_raw_fd(), ring.params().clone())? };
        let descriptors = KernelBuffer::new(usize::from(count) * size_of::<BufRingEntry>(), PAGE);
        // SAFETY: the descriptor array is `count` descriptors of page-aligned, zeroed memory,
        // owned by this BufferRing and never resized, and freed only after the registration
        // has ended (see `Drop`).
        unsafe {
            owner.submitter().register_buf_ring_with_flags(
                descriptors.as_ptr() as u64,
                count,
                group,
                0,
            )?;
        }
        let mut buffers = BufferRing {
            owner,
            descriptors,
            memory: KernelBuffer::new(usize::from(count) * size, PAGE),
            size,
            ours: vec![true; usize::from(count)],
            group,
            tail: 0,
            leaked: false,
        };
        for id in 0..count {
            buffers.give_back(id);
        }
        Ok(buffers)
    }

    /// The group id receives name to take their buffers from this ring.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// The first `len` bytes of buffer `id`, which a completion has just handed to us: the
    /// buffer is ours until [`give_back`](Self::give_back).
    ///
    /// # Panics
    ///
    /// When buffer `id` is ours already (two completions cannot name one buffer) or `len`
    /// exceeds it: a bug.
    pub fn take(&mut self, id: u16, len: usize) -> &[u8] {
        let id = usize::from(id);
        assert!(!self.ours[id], "buffer {id} was already ours");
        assert!(len <= self.size, "a buffer holds {} bytes", self.size);
        self.ours[id] = true;
        // SAFETY: the completion that named buffer `id` says the kernel has filled it and
        // done with it: it writes it again only once it is published again, by
        // `give_back`, which the borrow of `self` in the returned slice holds off.
        unsafe { self.memory.bytes(id * self.size..id * self.size + len) }
    }

    // ANCHOR: give_back
    /// Puts buffer `id` back in the ring: the kernel may fill it again.
    pub fn give_back(&mut self, id: u16) {
        // Only a buffer that is ours goes back: then at most `count - 1` buffers are
        // published while its slot is written, so the slot at the tail is not among them,
        // and the kernel does not read it meanwhile.
        assert!(self.ours[usize::from(id)], "buffer {id} is the kernel's");
        self.ours[usize::from(id)] = false;
        let index = usize::from(self.tail) & (self.ours.len() - 1);
        let descriptors = self.descriptors.as_ptr().cast::<BufRingEntry>();
        // SAFETY: `index` is within the `count` descriptors of the array, and the slot is not
        // published (above); the setters write their own field each (never the fourth,
        // which in slot 0 is the tail).
        let slot = unsafe { &mut *descriptors.add(index) };
        let buffer = self
            .memory
            .as_ptr()
            .wrapping_add(usize::from(id) * self.size);
        slot.set_addr(buffer as u64);
        slot.set_len(self.size as u32);
        slot.set_bid(id);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail is the aligned u16 at the end of the first descriptor, in memory
        // we own; the kernel only reads it. The release store publishes the slot written
        // above before the kernel can see the new tail.
        unsafe {
            let tail = BufRingEntry::tail(descriptors).cast_mut();
            AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
        }
    }
    // ANCHOR_END: give_back

    /// Gives up the memory without freeing it, and without ending the registration: for when
    /// operations that may write it are still in flight and the kernel cannot say when they
    /// end (the event loop could not cancel them).
    pub fn leak(&mut self) {
        self.leaked = true;
    }
}

/// Ends the registration, then frees the buffers: after unregistering, the kernel takes no
/// buffer from the group any more. The owner drops this only once no receive that selects
/// from the group is in flight (the event loop cancels everything first), or calls
/// [`leak`](BufferRing::leak) instead.
impl Drop for BufferRing {
    fn drop(&mut self) {
        if self.leaked
            || self
                .owner
                .submitter()
                .unregister_buf_ring(self.group)
                .is_err()
        {
            // Still registered: the kernel may use the memory, so it is never freed.
            std::mem::take(&mut self.descriptors).leak();
            std::mem::take(&mut self.memory).leak();
        }
    }
}

impl fmt::Debug for BufferRing {
    /// Never the bytes: the kernel may be writing them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferRing")
            .field("ring", &self.owner.as_raw_fd())
            .field("group", &self.group)
            .field("buffers", &self.ours.len())
            .field("size", &self.size)
            .field("tail", &self.tail)
            .finish_non_exhaustive()
    }
}
