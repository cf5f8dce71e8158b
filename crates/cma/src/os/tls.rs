//! The thread's own words of cma state, reached without a call.
//!
//! A Rust `thread_local!` in a shared library (libcma.so) compiles to the
//! general-dynamic TLS model: every access is a call to `__tls_get_addr`,
//! about a fifth of a malloc/free pair, and glibc's `__tls_get_addr` may
//! itself call malloc to grow a thread's DTV. On x86_64 Linux the words
//! are therefore declared in assembly, in `.tbss`, and read with the
//! initial-exec model: one load of the word's offset from the GOT, one load
//! relative to `%fs`. In an executable the linker turns the GOT load into a
//! constant. A shared library that uses the model is marked `STATIC_TLS`:
//! loaded at start-up (a dependency, or `LD_PRELOAD`), it is placed in the
//! static TLS block; `dlopen`ed later, glibc serves its 32 bytes from the
//! static block's spare room. Other targets use a `thread_local!` with a
//! `const` initialiser (plain TLS in an executable, no allocation).
//!
//! Every word starts at zero in every thread. What they mean is the heap
//! layer's business (`heap::guard`).

use core::cell::Cell;

/// Words of thread state in the block.
pub(crate) const WORDS: usize = 4;

/// The thread's words; see the module docs.
pub(crate) type ThreadWords = [Cell<usize>; WORDS];

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod imp {
    use super::ThreadWords;

    // The symbol is hidden (each shared object that embeds cma has its own)
    // and versioned by name, so two copies of cma linked into one program
    // keep apart.
    core::arch::global_asm!(
        ".pushsection .tbss.cma_thread_words,\"awT\",@nobits",
        ".p2align 5",
        ".globl __cma_thread_words_v1",
        ".hidden __cma_thread_words_v1",
        ".type __cma_thread_words_v1, @object",
        ".size __cma_thread_words_v1, 32",
        "__cma_thread_words_v1:",
        ".zero 32",
        ".popsection",
    );

    /// The words' offset from the thread pointer: the same for every thread.
    #[inline(always)]
    fn offset() -> usize {
        let off: usize;
        // SAFETY: reads the GOT entry the linker made for the TLS symbol
        // above (or an immediate, once relaxed); no side effects.
        unsafe {
            core::arch::asm!(
                "mov {off}, qword ptr [rip + __cma_thread_words_v1@GOTTPOFF]",
                off = out(reg) off,
                options(pure, readonly, nostack, preserves_flags),
            );
        }
        off
    }

    #[inline(always)]
    pub(crate) fn words() -> &'static ThreadWords {
        let p: usize;
        // SAFETY: %fs:0 holds the thread pointer (the x86_64 TLS ABI); the
        // words lie at a fixed offset from it for the thread's whole life.
        unsafe {
            core::arch::asm!(
                "add {p}, qword ptr fs:[0]",
                p = inout(reg) offset() => p,
                options(pure, readonly, nostack),
            );
            &*(p as *const ThreadWords)
        }
    }

    #[inline(always)]
    pub(crate) fn word<const I: usize>() -> usize {
        let v: usize;
        // SAFETY: as in `words`; a plain load of word I (< WORDS), which
        // only this thread writes.
        unsafe {
            core::arch::asm!(
                "mov {v}, qword ptr fs:[{off} + {disp}]",
                off = in(reg) offset(),
                disp = const I * 8,
                v = lateout(reg) v,
                options(readonly, nostack, preserves_flags),
            );
        }
        v
    }

    #[inline(always)]
    pub(crate) fn add_word<const I: usize>(base: usize) -> usize {
        let v: usize;
        // SAFETY: as in `word`; the load is the add's memory operand.
        unsafe {
            core::arch::asm!(
                "add {v}, qword ptr fs:[{off} + {disp}]",
                off = in(reg) offset(),
                disp = const I * 8,
                v = inout(reg) base => v,
                options(pure, readonly, nostack),
            );
        }
        v
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod imp {
    use super::{ThreadWords, WORDS};
    use core::cell::Cell;

    thread_local! {
        static BLOCK: ThreadWords = const { [const { Cell::new(0) }; WORDS] };
    }

    #[inline(always)]
    pub(crate) fn words() -> &'static ThreadWords {
        // SAFETY: the words have no destructor and live as long as the
        // thread; the reference never leaves it (Cell is not Sync).
        BLOCK.with(|w| unsafe { &*(w as *const ThreadWords) })
    }

    #[inline(always)]
    pub(crate) fn word<const I: usize>() -> usize {
        BLOCK.with(|w| w[I].get())
    }

    #[inline(always)]
    pub(crate) fn add_word<const I: usize>(base: usize) -> usize {
        base.wrapping_add(word::<I>())
    }
}

/// The calling thread's words.
#[inline(always)]
pub(crate) fn words() -> &'static ThreadWords {
    imp::words()
}

/// Word `I` of the calling thread's words, in one load where the target
/// allows.
#[inline(always)]
pub(crate) fn word<const I: usize>() -> usize {
    const { assert!(I < WORDS) };
    imp::word::<I>()
}

/// `base` plus word `I` of the calling thread's words (wrapping), the word
/// read as the add's operand where the target allows: one instruction less
/// than `word` and an add.
#[inline(always)]
pub(crate) fn add_word<const I: usize>(base: usize) -> usize {
    const { assert!(I < WORDS) };
    imp::add_word::<I>(base)
}
