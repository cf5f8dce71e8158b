//! Bad input never damages state: a generated stream of hostile calls
//! (frees of stack, static, foreign, unmapped and interior addresses, double
//! frees, impossible sizes, alignments that are not powers of two, a limit
//! of 0, option strings of random bytes) goes through the checked API
//! between ordinary allocations and frees. After every call the counters
//! are exact, every live block's contents are intact and the guard depth is
//! 0. CI runs 256 cases; `PROPTEST_CASES=100000 cargo test --test hostile`
//! runs longer.

use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Call {
    Alloc(usize),
    Free(usize),
    FreeTwice(usize),
    Interior(usize, usize),
    Foreign(u8),
    Unmapped(u64),
    ImpossibleSize(u64),
    BadAlignment(usize),
    LimitZero,
    OptionBytes(Vec<u8>),
    BlockSizeOf(u64),
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        4 => (1usize..5000).prop_map(Call::Alloc),
        3 => any::<usize>().prop_map(Call::Free),
        1 => any::<usize>().prop_map(Call::FreeTwice),
        1 => (any::<usize>(), 1usize..4096).prop_map(|(i, o)| Call::Interior(i, o)),
        1 => (0u8..3).prop_map(Call::Foreign),
        1 => prop_oneof![1u64..0x10000, (1u64 << 47)..u64::MAX].prop_map(Call::Unmapped),
        1 => (0u64..1 << 20).prop_map(|d| Call::ImpossibleSize(u64::MAX - d)),
        1 => (3usize..1 << 20).prop_filter("not a power of two", |a| !a.is_power_of_two())
            .prop_map(Call::BadAlignment),
        1 => Just(Call::LimitZero),
        1 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Call::OptionBytes),
        1 => prop_oneof![1u64..0x10000, (1u64 << 47)..u64::MAX].prop_map(Call::BlockSizeOf),
    ]
}

static NOT_HEAP: [u8; 64] = [0; 64];

struct Block {
    ptr: *mut u8,
    size: usize,
    fill: u8,
}

fn live_allocations() -> i64 {
    let s = cma::stats();
    s.allocations as i64 - s.frees as i64
}

proptest! {
    #[test]
    fn hostile_calls_change_nothing(calls in proptest::collection::vec(call(), 1..200)) {
        let base = live_allocations();
        let mut live: Vec<Block> = Vec::new();
        for (step, c) in calls.iter().enumerate() {
            match c {
                Call::Alloc(size) => {
                    let p = cma::malloc(*size);
                    prop_assert!(!p.is_null());
                    let fill = (step % 251) as u8 + 1;
                    // SAFETY: a fresh block of `size` bytes.
                    unsafe { std::ptr::write_bytes(p, fill, *size) };
                    live.push(Block { ptr: p, size: *size, fill });
                }
                Call::Free(i) if !live.is_empty() => {
                    let b = live.swap_remove(i % live.len());
                    // SAFETY: a live block, freed once.
                    prop_assert_eq!(unsafe { cma::checked_free(b.ptr) }, Ok(()));
                }
                Call::FreeTwice(i) if !live.is_empty() => {
                    let b = live.swap_remove(i % live.len());
                    // SAFETY: a live block; the second free is the misuse.
                    prop_assert_eq!(unsafe { cma::checked_free(b.ptr) }, Ok(()));
                    // SAFETY: as above.
                    let again = unsafe { cma::checked_free(b.ptr) };
                    prop_assert!(matches!(again, Err(e) if e.is_misuse()), "{:?}", again);
                }
                Call::Interior(i, off) if !live.is_empty() => {
                    let b = &live[i % live.len()];
                    let off = 1 + off % b.size.max(2);
                    // SAFETY: deliberate misuse, reported as an error.
                    let r = unsafe { cma::checked_free(b.ptr.wrapping_add(off)) };
                    prop_assert!(matches!(r, Err(e) if e.is_misuse()), "offset {}: {:?}", off, r);
                }
                Call::Foreign(kind) => {
                    let on_stack = [0u8; 32];
                    let boxed = Box::new([0u8; 48]);
                    let p = match kind {
                        0 => on_stack.as_ptr().wrapping_add(8) as *mut u8,
                        1 => NOT_HEAP.as_ptr().wrapping_add(16) as *mut u8,
                        _ => boxed.as_ptr() as *mut u8,
                    };
                    // SAFETY: deliberate misuse, reported as an error.
                    let r = unsafe { cma::checked_free(p) };
                    prop_assert!(matches!(r, Err(cma::CmaError::NotOurs { .. })), "{:?}", r);
                    prop_assert!(cma::checked_block_size(p).is_err());
                }
                Call::Unmapped(addr) => {
                    // SAFETY: deliberate misuse, reported as an error.
                    let r = unsafe { cma::checked_free(*addr as usize as *mut u8) };
                    prop_assert!(matches!(r, Err(e) if e.is_misuse()), "{:#x}: {:?}", addr, r);
                }
                Call::ImpossibleSize(size) => {
                    let size = *size as usize;
                    prop_assert!(cma::try_alloc(size, 8).is_err());
                    prop_assert!(cma::try_alloc_zeroed(size, 64).is_err());
                    prop_assert!(cma::malloc(size).is_null());
                    prop_assert!(cma::calloc(size, 2).is_null());
                    if let Some(b) = live.first() {
                        // SAFETY: a live block; the failed resize keeps it.
                        let r = unsafe { cma::try_realloc_checked(b.ptr, size) };
                        prop_assert!(r.is_err());
                    }
                }
                Call::BadAlignment(align) => {
                    prop_assert_eq!(
                        cma::try_alloc(16, *align),
                        Err(cma::CmaError::InvalidAlignment { align: *align })
                    );
                    prop_assert!(cma::aligned_alloc(*align, 16).is_null());
                }
                Call::LimitZero => {
                    let before = cma::alloc_limits();
                    cma::set_alloc_limits(cma::AllocLimits { max_request: Some(0), max_bytes_in_use: Some(0) });
                    let r = cma::try_alloc(1, 8);
                    prop_assert!(r.is_err());
                    prop_assert!(cma::malloc(1).is_null());
                    cma::set_alloc_limits(before);
                }
                Call::OptionBytes(bytes) => {
                    let mut items = 0;
                    cma::options::parse(bytes, |_| items += 1);
                    prop_assert!(items <= bytes.len() + 1);
                }
                Call::BlockSizeOf(addr) => {
                    prop_assert!(cma::checked_block_size(*addr as usize as *const u8).is_err());
                }
                _ => {}
            }
            prop_assert_eq!(cma::guard_depth(), 0, "step {}: {:?}", step, c);
            prop_assert_eq!(live_allocations() - base, live.len() as i64, "step {}: {:?}", step, c);
            for b in &live {
                // SAFETY: live blocks of `size` bytes, written at allocation.
                let bytes = unsafe { std::slice::from_raw_parts(b.ptr, b.size) };
                prop_assert!(bytes.iter().all(|&x| x == b.fill), "step {}: {:?} changed a live block", step, c);
                prop_assert!(cma::checked_block_size(b.ptr).is_ok_and(|n| n >= b.size));
            }
        }
        for b in live {
            // SAFETY: live, freed once.
            prop_assert_eq!(unsafe { cma::checked_free(b.ptr) }, Ok(()));
        }
        prop_assert_eq!(live_allocations(), base);
    }
}
