//! A faster stack walk for x86_64, for the profiles' stacks (one per
//! recorded block at `profile=all`): the unwinder's (`_Unwind_Backtrace`)
//! interprets each frame's DWARF call-frame program every time, about
//! 200 ns a frame; here the rule that steps from a code address to its
//! caller (the CFA, where the return address and the caller's `rbp` are
//! kept) is worked out once, from the same tables (found with libgcc's
//! `_Unwind_Find_FDE`), and cached by address. A cached step is a few
//! loads (the technique of libunwind's "fast trace").
//!
//! Only plain rules are taken: the CFA is `rsp` or `rbp` plus an offset,
//! the return address is at CFA-8, `rbp` is kept or saved at a fixed
//! offset from the CFA. Anything else (a signal frame, an expression, a
//! register moved to another register, no table at all) makes `capture`
//! give up, and the caller walks with the unwinder instead, so the result
//! is the same either way. A step must also move up the stack, by less than
//! 16 MiB, to an 8-byte aligned CFA: a stack that does not look like one
//! is left to the unwinder too.
//!
//! The cache: 16,384 entries of two words side by side (one cache line), a
//! key (the address) and a packed rule, behind a front cache of 512 such
//! entries (8 KiB: a program's hot stacks stay in the L1 cache); both
//! written by any thread, read without a lock: a reader takes an entry
//! only when it reads the same key before and after the rule (a writer
//! clears the key first, then writes the rule, then the key).

#[cfg(target_arch = "x86_64")]
pub(crate) use imp::capture;

/// Not on this architecture: the caller uses the unwinder.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(crate) fn capture(_frames: &mut [usize], _skip: usize) -> Option<usize> {
    None
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use core::ffi::c_void;
    use core::sync::atomic::{AtomicU64, Ordering};

    /// `struct dwarf_eh_bases` of libgcc's `unwind-dw2-fde.h`.
    #[repr(C)]
    struct Bases {
        tbase: *mut c_void,
        dbase: *mut c_void,
        func: *mut c_void,
    }

    extern "C" {
        fn _Unwind_Find_FDE(pc: *mut c_void, bases: *mut Bases) -> *const u8;
    }

    /// DWARF register numbers on x86_64.
    const RBP: u64 = 6;
    const RSP: u64 = 7;
    const RA: u64 = 16;

    /// How to step from a frame to its caller.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Step {
        /// The outermost frame (its return address is undefined).
        End,
        Frame {
            /// CFA = `rbp` (else `rsp`) + `offset`.
            from_rbp: bool,
            offset: u32,
            /// The caller's `rbp` is saved at CFA + this (else kept).
            rbp_at: Option<i32>,
        },
    }

    const VALID: u64 = 1 << 63;
    const END: u64 = 1 << 62;
    const FROM_RBP: u64 = 1 << 61;
    const RBP_SAVED: u64 = 1 << 60;
    /// A cached "no plain rule here".
    const NONE: u64 = 1 << 59;

    fn pack(step: Option<Step>) -> u64 {
        match step {
            None => VALID | NONE,
            Some(Step::End) => VALID | END,
            Some(Step::Frame {
                from_rbp,
                offset,
                rbp_at,
            }) => {
                let mut v = VALID | offset as u64;
                if from_rbp {
                    v |= FROM_RBP;
                }
                if let Some(at) = rbp_at {
                    v |= RBP_SAVED | ((at as u32 as u64) << 32 & 0x00FF_FFFF_0000_0000);
                }
                v
            }
        }
    }

    fn unpack(v: u64) -> Option<Step> {
        if v & NONE != 0 {
            return None;
        }
        if v & END != 0 {
            return Some(Step::End);
        }
        // 24 bits, sign-extended.
        let rbp_at = (v & RBP_SAVED != 0).then_some((((v >> 32) as u32) << 8) as i32 >> 8);
        Some(Step::Frame {
            from_rbp: v & FROM_RBP != 0,
            offset: v as u32,
            rbp_at,
        })
    }

    const CACHE: usize = 16384;

    /// One cache entry: the key and its rule side by side, so that a
    /// lookup touches one cache line.
    #[repr(C, align(16))]
    struct Entry {
        key: AtomicU64,
        rule: AtomicU64,
    }

    static ENTRIES: [Entry; CACHE] = [const { Entry::new() }; CACHE];

    /// A small cache in front of `ENTRIES` (8 KiB, so that the few hundred
    /// code addresses of a program's hot stacks stay in the L1 cache).
    const FRONT: usize = 512;
    static FRONT_ENTRIES: [Entry; FRONT] = [const { Entry::new() }; FRONT];

    impl Entry {
        const fn new() -> Entry {
            Entry {
                key: AtomicU64::new(0),
                rule: AtomicU64::new(0),
            }
        }

        /// The rule cached for `pc`, if this entry holds it.
        #[inline(always)]
        fn get(&self, pc: usize) -> Option<u64> {
            let key = self.key.load(Ordering::Acquire);
            if key == pc as u64 {
                let rule = self.rule.load(Ordering::Acquire);
                if self.key.load(Ordering::Acquire) == key && rule & VALID != 0 {
                    return Some(rule);
                }
            }
            None
        }

        fn set(&self, pc: usize, rule: u64) {
            self.key.store(0, Ordering::Release);
            self.rule.store(rule, Ordering::Release);
            self.key.store(pc as u64, Ordering::Release);
        }
    }

    fn hash(pc: usize) -> u64 {
        (pc as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    /// The step for code address `pc` (a return address less one, or the
    /// first frame's own address).
    #[inline]
    fn step_for(pc: usize) -> Option<Step> {
        let front = &FRONT_ENTRIES[(hash(pc) >> 55) as usize & (FRONT - 1)];
        if let Some(rule) = front.get(pc) {
            return unpack(rule);
        }
        step_behind(front, pc)
    }

    /// `step_for` past the front cache: the main cache, else the tables
    /// (both cache the step).
    #[cold]
    #[inline(never)]
    fn step_behind(front: &Entry, pc: usize) -> Option<Step> {
        let e = &ENTRIES[(hash(pc) >> 50) as usize & (CACHE - 1)];
        let rule = match e.get(pc) {
            Some(rule) => rule,
            None => {
                let rule = pack(find_step(pc));
                e.set(pc, rule);
                rule
            }
        };
        front.set(pc, rule);
        unpack(rule)
    }

    /// Reads the encoded and LEB128 values of the tables.
    struct Reader {
        p: *const u8,
        end: *const u8,
    }

    impl Reader {
        fn u8(&mut self) -> Option<u8> {
            if self.p >= self.end {
                return None;
            }
            // SAFETY: below `end`, inside the table the loader mapped.
            let v = unsafe { self.p.read() };
            self.p = self.p.wrapping_add(1);
            Some(v)
        }

        fn bytes<const N: usize>(&mut self) -> Option<[u8; N]> {
            let mut out = [0u8; N];
            for b in &mut out {
                *b = self.u8()?;
            }
            Some(out)
        }

        fn uleb(&mut self) -> Option<u64> {
            let (mut v, mut shift) = (0u64, 0);
            loop {
                let b = self.u8()?;
                if shift < 64 {
                    v |= ((b & 0x7f) as u64) << shift;
                }
                shift += 7;
                if b & 0x80 == 0 {
                    return Some(v);
                }
            }
        }

        fn sleb(&mut self) -> Option<i64> {
            let (mut v, mut shift) = (0i64, 0);
            loop {
                let b = self.u8()?;
                if shift < 64 {
                    v |= ((b & 0x7f) as i64) << shift;
                }
                shift += 7;
                if b & 0x80 == 0 {
                    if shift < 64 && b & 0x40 != 0 {
                        v |= -1i64 << shift;
                    }
                    return Some(v);
                }
            }
        }

        /// Skips a pointer encoded as `enc` (`DW_EH_PE_*`).
        fn skip_encoded(&mut self, enc: u8) -> Option<()> {
            if enc == 0xff {
                return Some(());
            }
            match enc & 0x0f {
                0x00 | 0x04 | 0x0c => self.bytes::<8>().map(|_| ()),
                0x02 | 0x0a => self.bytes::<2>().map(|_| ()),
                0x03 | 0x0b => self.bytes::<4>().map(|_| ()),
                0x01 => self.uleb().map(|_| ()),
                0x09 => self.sleb().map(|_| ()),
                _ => None,
            }
        }
    }

    /// The rules being worked out for one code address.
    #[derive(Clone, Copy)]
    struct Row {
        cfa_reg: u64,
        cfa_off: i64,
        rbp: Rule,
        ra: Rule,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Rule {
        /// Same value (or never said).
        Kept,
        Undefined,
        At(i64),
        /// Something this walker does not do.
        Other,
    }

    /// Works the plain step out of the call-frame tables for `pc`.
    fn find_step(pc: usize) -> Option<Step> {
        let mut bases = Bases {
            tbase: core::ptr::null_mut(),
            dbase: core::ptr::null_mut(),
            func: core::ptr::null_mut(),
        };
        // SAFETY: libgcc looks the address up in the loaded objects'
        // tables (lock-free with glibc's `_dl_find_object`) and fills
        // `bases`; null when no table covers it.
        let fde = unsafe { _Unwind_Find_FDE(pc as *mut c_void, &mut bases) };
        if fde.is_null() {
            return None;
        }
        let func = bases.func as usize;
        // SAFETY: an FDE starts with its 32-bit length and the 32-bit
        // offset back to its CIE, in the mapped table.
        let (len, cie_off) = unsafe {
            (
                fde.cast::<u32>().read_unaligned(),
                fde.add(4).cast::<u32>().read_unaligned(),
            )
        };
        if len == 0 || len == u32::MAX || cie_off == 0 {
            return None;
        }
        let fde_end = fde.wrapping_add(4 + len as usize);
        let cie = fde.wrapping_add(4).wrapping_sub(cie_off as usize);
        // SAFETY: the CIE's length word, in the same mapped table.
        let cie_len = unsafe { cie.cast::<u32>().read_unaligned() };
        if cie_len == 0 || cie_len == u32::MAX {
            return None;
        }
        let mut r = Reader {
            p: cie.wrapping_add(8),
            end: cie.wrapping_add(4 + cie_len as usize),
        };
        let version = r.u8()?;
        let mut aug = [0u8; 8];
        let mut aug_len = 0;
        loop {
            let c = r.u8()?;
            if c == 0 {
                break;
            }
            if aug_len == aug.len() {
                return None;
            }
            aug[aug_len] = c;
            aug_len += 1;
        }
        let aug = &aug[..aug_len];
        if aug.first().is_some_and(|&c| c != b'z') || aug.contains(&b'S') {
            // Old-style augmentations, and signal frames: the unwinder's.
            return None;
        }
        let code_align = r.uleb()? as i64;
        let data_align = r.sleb()?;
        let ra_reg = if version == 1 {
            r.u8()? as u64
        } else {
            r.uleb()?
        };
        if ra_reg != RA {
            return None;
        }
        let mut fde_enc = 0u8;
        if !aug.is_empty() {
            let len = r.uleb()? as usize;
            let after = r.p.wrapping_add(len);
            for &c in &aug[1..] {
                match c {
                    b'R' => fde_enc = r.u8()?,
                    b'P' => {
                        let enc = r.u8()?;
                        r.skip_encoded(enc)?;
                    }
                    b'L' => {
                        r.u8()?;
                    }
                    _ => {}
                }
            }
            r.p = after;
        }
        let mut row = Row {
            cfa_reg: RSP,
            cfa_off: 8,
            rbp: Rule::Kept,
            ra: Rule::Undefined,
        };
        // The CIE's program: the row at the function's first instruction.
        run(&mut r, &mut row, None, code_align, data_align, func, pc)?;
        let initial = row;
        let mut f = Reader {
            p: fde.wrapping_add(8),
            end: fde_end,
        };
        f.skip_encoded(fde_enc)?;
        f.skip_encoded(fde_enc & 0x0f)?;
        if !aug.is_empty() {
            let len = f.uleb()? as usize;
            f.p = f.p.wrapping_add(len);
        }
        run(
            &mut f,
            &mut row,
            Some(&initial),
            code_align,
            data_align,
            func,
            pc,
        )?;
        match row.ra {
            Rule::Undefined => return Some(Step::End),
            Rule::At(-8) => {}
            _ => return None,
        }
        let from_rbp = match row.cfa_reg {
            RSP => false,
            RBP => true,
            _ => return None,
        };
        let offset = u32::try_from(row.cfa_off).ok()?;
        let rbp_at = match row.rbp {
            Rule::Kept => None,
            Rule::At(at) => Some(i32::try_from(at).ok().filter(|a| a.abs() < 1 << 22)?),
            _ => return None,
        };
        Some(Step::Frame {
            from_rbp,
            offset,
            rbp_at,
        })
    }

    /// Runs a call-frame program until the row for `pc` (code from `func`);
    /// `None` on an instruction this walker does not follow for the CFA, the
    /// return address or `rbp`.
    fn run(
        r: &mut Reader,
        row: &mut Row,
        initial: Option<&Row>,
        code_align: i64,
        data_align: i64,
        func: usize,
        pc: usize,
    ) -> Option<()> {
        let mut loc = func;
        let mut saved: [Row; 4] = [*row; 4];
        let mut depth = 0usize;
        let set = |row: &mut Row, reg: u64, rule: Rule| match reg {
            RBP => row.rbp = rule,
            RA => row.ra = rule,
            RSP if rule != Rule::Kept => row.cfa_reg = u64::MAX,
            _ => {}
        };
        let restore = |row: &mut Row, reg: u64| {
            if let Some(init) = initial {
                match reg {
                    RBP => row.rbp = init.rbp,
                    RA => row.ra = init.ra,
                    _ => {}
                }
            }
        };
        while r.p < r.end {
            let op = r.u8()?;
            let advance = |loc: &mut usize, delta: u64| {
                *loc = loc.wrapping_add((delta as i64 * code_align) as usize);
                *loc > pc
            };
            match op >> 6 {
                1 => {
                    if advance(&mut loc, (op & 0x3f) as u64) {
                        return Some(());
                    }
                    continue;
                }
                2 => {
                    let off = r.uleb()? as i64 * data_align;
                    set(row, (op & 0x3f) as u64, Rule::At(off));
                    continue;
                }
                3 => {
                    restore(row, (op & 0x3f) as u64);
                    continue;
                }
                _ => {}
            }
            match op {
                0x00 => {}
                0x01 => return None, // set_loc: not in .eh_frame of these targets
                0x02 => {
                    let d = r.u8()? as u64;
                    if advance(&mut loc, d) {
                        return Some(());
                    }
                }
                0x03 => {
                    let d = u16::from_le_bytes(r.bytes::<2>()?) as u64;
                    if advance(&mut loc, d) {
                        return Some(());
                    }
                }
                0x04 => {
                    let d = u32::from_le_bytes(r.bytes::<4>()?) as u64;
                    if advance(&mut loc, d) {
                        return Some(());
                    }
                }
                0x05 => {
                    let reg = r.uleb()?;
                    let off = r.uleb()? as i64 * data_align;
                    set(row, reg, Rule::At(off));
                }
                0x06 => restore(row, r.uleb()?),
                0x07 => set(row, r.uleb()?, Rule::Undefined),
                0x08 => set(row, r.uleb()?, Rule::Kept),
                0x09 => {
                    let reg = r.uleb()?;
                    r.uleb()?;
                    set(row, reg, Rule::Other);
                }
                0x0a => {
                    if depth == saved.len() {
                        return None;
                    }
                    saved[depth] = *row;
                    depth += 1;
                }
                0x0b => {
                    depth = depth.checked_sub(1)?;
                    // The CFA rule is part of the remembered state, as
                    // libgcc's and LLVM's unwinders keep it and compilers
                    // assume: an epilogue's `.cfi_remember_state` ...
                    // `.cfi_restore_state` brings the body's CFA back
                    // after a `ret` with no `.cfi_def_cfa_offset` of its
                    // own.
                    *row = saved[depth];
                }
                0x0c => {
                    row.cfa_reg = r.uleb()?;
                    row.cfa_off = r.uleb()? as i64;
                }
                0x0d => row.cfa_reg = r.uleb()?,
                0x0e => row.cfa_off = r.uleb()? as i64,
                0x0f => return None, // def_cfa_expression
                0x10 | 0x16 => {
                    // expression / val_expression: fine for other registers.
                    let reg = r.uleb()?;
                    let len = r.uleb()? as usize;
                    r.p = r.p.wrapping_add(len);
                    set(row, reg, Rule::Other);
                }
                0x11 => {
                    let reg = r.uleb()?;
                    let off = r.sleb()? * data_align;
                    set(row, reg, Rule::At(off));
                }
                0x12 => {
                    row.cfa_reg = r.uleb()?;
                    row.cfa_off = r.sleb()? * data_align;
                }
                0x13 => row.cfa_off = r.sleb()? * data_align,
                0x14 | 0x15 => {
                    let reg = r.uleb()?;
                    if op == 0x14 {
                        r.uleb()?;
                    } else {
                        r.sleb()?;
                    }
                    set(row, reg, Rule::Other);
                }
                0x2e => {
                    r.uleb()?; // GNU_args_size
                }
                0x2f => {
                    let reg = r.uleb()?;
                    let off = -(r.uleb()? as i64) * data_align;
                    set(row, reg, Rule::At(off));
                }
                _ => return None,
            }
        }
        Some(())
    }

    /// Writes the return addresses of the calling thread's stack into
    /// `frames`, innermost first, leaving out the caller of `capture` and
    /// `skip` more frames, as `os::backtrace::capture` does; `None` when a
    /// frame needs the unwinder.
    #[inline(never)]
    pub(crate) fn capture(frames: &mut [usize], skip: usize) -> Option<usize> {
        let (mut ip, mut sp, mut bp): (usize, usize, usize);
        // SAFETY: reads three registers; touches no memory.
        unsafe {
            core::arch::asm!(
                "lea {ip}, [rip]",
                "mov {sp}, rsp",
                "mov {bp}, rbp",
                ip = out(reg) ip,
                sp = out(reg) sp,
                bp = out(reg) bp,
                options(nomem, nostack, preserves_flags),
            );
        }
        // This function's own frame, then the caller's, are left out.
        let mut skip = skip + 1;
        let mut first = true;
        let mut len = 0;
        while len < frames.len() {
            let step = step_for(if first { ip } else { ip - 1 })?;
            first = false;
            let Step::Frame {
                from_rbp,
                offset,
                rbp_at,
            } = step
            else {
                return Some(len);
            };
            let cfa = if from_rbp { bp } else { sp }.wrapping_add(offset as usize);
            if cfa <= sp || cfa - sp > 16 << 20 || cfa % 8 != 0 {
                return None;
            }
            // SAFETY: the CFA lies on this thread's stack, above the frame
            // just left (checked), by the frame's own call-frame rules: the
            // return address is at CFA-8 and a saved rbp at CFA+at.
            unsafe {
                ip = ((cfa - 8) as *const usize).read();
                if let Some(at) = rbp_at {
                    bp = (cfa.wrapping_add_signed(at as isize) as *const usize).read();
                }
            }
            sp = cfa;
            if ip == 0 {
                return Some(len);
            }
            if skip > 0 {
                skip -= 1;
                continue;
            }
            frames[len] = ip;
            len += 1;
        }
        Some(len)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[inline(never)]
        fn both(depth: usize) -> ([usize; 32], usize, [usize; 32], usize) {
            if depth > 0 {
                let r = both(depth - 1);
                core::hint::black_box(&r);
                return r;
            }
            let mut fast = [0usize; 32];
            let mut slow = [0usize; 32];
            let f = capture(&mut fast, 0).expect("a plain stack");
            let s = crate::os::backtrace::capture_with_unwinder(&mut slow, 0);
            (fast, f, slow, s)
        }

        #[test]
        fn the_fast_walk_finds_the_unwinders_frames() {
            for depth in [0, 3, 10] {
                let (fast, f, slow, s) = both(depth);
                // The fast walk leaves out its caller (`both`), the
                // unwinder's walk only itself: one frame apart.
                assert!(f >= depth + 2 && s == f + 1, "{f} {s}");
                assert_eq!(&fast[..f], &slow[1..s], "depth {depth}");
            }
        }

        /// The rows of a function with two returns, as gcc writes them:
        /// `push rbp` (CFA = rsp+16, rbp at CFA-16), then an epilogue
        /// between `remember_state` and `restore_state` (`pop rbp`:
        /// CFA = rsp+8; `ret`), then more body, where the remembered
        /// CFA holds again.
        #[test]
        fn restore_state_brings_back_the_remembered_cfa() {
            let program: [u8; 12] = [
                0x41, // advance_loc 1 (after `push rbp`)
                0x0e, 16, // def_cfa_offset 16
                0x86, 2,    // offset rbp at cfa-16 (data_align -8)
                0x43, // advance_loc 3
                0x0a, // remember_state
                0x41, // advance_loc 1 (after `pop rbp`)
                0x0e, 8,    // def_cfa_offset 8
                0x41, // advance_loc 1 (after `ret`)
                0x0b, // restore_state
            ];
            let row_at = |pc: usize| {
                let mut r = Reader {
                    p: program.as_ptr(),
                    end: program.as_ptr().wrapping_add(program.len()),
                };
                let mut row = Row {
                    cfa_reg: RSP,
                    cfa_off: 8,
                    rbp: Rule::Kept,
                    ra: Rule::At(-8),
                };
                let initial = row;
                run(&mut r, &mut row, Some(&initial), 1, -8, 0x1000, 0x1000 + pc)
                    .expect("a plain program");
                (row.cfa_off, row.rbp)
            };
            assert_eq!(row_at(0), (8, Rule::Kept));
            assert_eq!(row_at(1), (16, Rule::At(-16)));
            // In the epilogue, after `pop rbp`.
            assert_eq!(row_at(5), (8, Rule::At(-16)));
            // Past the `ret`: the body's rule again.
            assert_eq!(row_at(6), (16, Rule::At(-16)));
            assert_eq!(row_at(40), (16, Rule::At(-16)));
        }

        #[test]
        fn packed_rules_read_back() {
            for step in [
                None,
                Some(Step::End),
                Some(Step::Frame {
                    from_rbp: false,
                    offset: 8,
                    rbp_at: None,
                }),
                Some(Step::Frame {
                    from_rbp: true,
                    offset: 16,
                    rbp_at: Some(-16),
                }),
                Some(Step::Frame {
                    from_rbp: false,
                    offset: 123_456,
                    rbp_at: Some(-(1 << 21)),
                }),
            ] {
                assert_eq!(unpack(pack(step)), step);
            }
        }
    }
}
