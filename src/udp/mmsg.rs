//! mmsg: the arrays of `mmsghdr` and `iovec` that `recvmmsg` and `sendmmsg` read.
//!
//! It owns one unsafe promise: [`Slots`] holds C structures whose raw pointers are written right
//! before each syscall (by the receiver or the sender, through `&mut self`) and never read by
//! Rust code afterwards, so their owners stay movable and `Send`. It must not point them
//! anywhere itself.

use std::mem;

/// The C structures kept in [`Slots`]: plain data for which all-zero bytes are a valid value.
///
/// # Safety
/// Implement only for `repr(C)` structs of integers and raw pointers.
pub(super) unsafe trait PlainC {}

// SAFETY: both are libc's C structs of integers and raw pointers.
unsafe impl PlainC for libc::mmsghdr {}
// SAFETY: as above.
unsafe impl PlainC for libc::iovec {}

/// A boxed array of syscall structures whose pointers only the kernel dereferences, during a
/// call made through `&mut self` of the owner.
pub(super) struct Slots<T: PlainC>(pub(super) Box<[T]>);

// SAFETY: the raw pointers inside the entries are rewritten right before each syscall to point
// at memory borrowed for that call; between calls they are stale and never dereferenced, so
// moving the owner to another thread cannot create shared access.
unsafe impl<T: PlainC> Send for Slots<T> {}

impl<T: PlainC> Slots<T> {
    pub(super) fn zeroed(n: usize) -> Slots<T> {
        // SAFETY: `T: PlainC`, for which all-zero bytes are a valid value.
        Slots((0..n).map(|_| unsafe { mem::zeroed() }).collect())
    }
}
