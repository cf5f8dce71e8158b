//! Where a file written at exit goes (the heap report's `report=`, the
//! profile's `profile_file=`): a path template chosen at most once, with
//! no lock, so that nothing a fork can leave held stands between the
//! destructor and its file.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// The longest path, NUL included.
pub const PATH_MAX: usize = 4096;

const EMPTY: u8 = 0;
const WRITING: u8 = 1;
const SET: u8 = 2;

/// Why `Destination::set` did not take a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DestinationRefused {
    /// Another destination was chosen before.
    AlreadyChosen,
    /// Too long for `PATH_MAX` with what its writer appends.
    TooLong,
}

/// A path template, set at most once, read at exit.
pub(crate) struct Destination {
    /// `EMPTY`, then `WRITING` while one thread copies the path in, then
    /// `SET` for good.
    state: AtomicU8,
    len: AtomicUsize,
    /// Written only by the thread that moved `state` from `EMPTY` to
    /// `WRITING`; read only after `state` is `SET` (acquire).
    template: UnsafeCell<[u8; PATH_MAX]>,
    /// Bytes its writer appends to the template, the NUL included.
    reserve: usize,
}

// SAFETY: `template` is written by one thread before `state` becomes `SET`
// (release) and only read after it is seen `SET` (acquire); see the fields.
unsafe impl Sync for Destination {}

impl Destination {
    /// No destination yet; its writer appends up to `reserve` bytes (the
    /// NUL included) to the template.
    pub(crate) const fn new(reserve: usize) -> Self {
        Destination {
            state: AtomicU8::new(EMPTY),
            len: AtomicUsize::new(0),
            template: UnsafeCell::new([0; PATH_MAX]),
            reserve,
        }
    }

    fn fits(&self, template: &[u8]) -> Result<(), DestinationRefused> {
        if template.len() + self.reserve > PATH_MAX {
            return Err(DestinationRefused::TooLong);
        }
        Ok(())
    }

    /// Chooses the template (with `%p` for the pid). The first choice
    /// holds; the same path again is accepted. An empty path chooses
    /// nothing.
    pub(crate) fn set(&self, template: &[u8]) -> Result<(), DestinationRefused> {
        if template.is_empty() {
            return Ok(());
        }
        self.fits(template)?;
        if self
            .state
            .compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Acquire)
            .is_err()
        {
            return match self.get() {
                Some(current) if current == template => Ok(()),
                _ => Err(DestinationRefused::AlreadyChosen),
            };
        }
        // SAFETY: this thread moved `state` to WRITING: nobody else writes
        // `template`, and nobody reads it before SET.
        let buf = unsafe { &mut *self.template.get() };
        buf[..template.len()].copy_from_slice(template);
        self.len.store(template.len(), Ordering::Relaxed);
        self.state.store(SET, Ordering::Release);
        Ok(())
    }

    /// Whether `set(template)` would be accepted now (a typed `Options`
    /// checks every value before it applies any).
    pub(crate) fn allowed(&self, template: &[u8]) -> Result<(), DestinationRefused> {
        self.fits(template)?;
        match self.get() {
            Some(current) if !template.is_empty() && current != template => {
                Err(DestinationRefused::AlreadyChosen)
            }
            _ => Ok(()),
        }
    }

    /// The chosen template, if one was.
    pub(crate) fn get(&self) -> Option<&[u8]> {
        if self.state.load(Ordering::Acquire) != SET {
            return None;
        }
        let len = self.len.load(Ordering::Relaxed);
        // SAFETY: SET was seen with acquire: `template` is written and
        // never changes again.
        let buf: &[u8; PATH_MAX] = unsafe { &*self.template.get() };
        buf.get(..len)
    }
}
