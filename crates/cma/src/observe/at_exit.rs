//! What the engine does as the process exits: the heap check, the heap
//! report and the heap profile, in that order.

use super::{profile_file, report_file};

extern "C" fn at_exit() {
    crate::check::heap_check::check_heap_at_exit();
    report_file::write_report_at_exit();
    profile_file::write_profile_at_exit();
}

// A destructor of whatever links this engine (the executable, or libcma):
// glibc runs `.fini_array` entries from `exit`, after the `atexit`
// handlers, so the counters include everything the program freed on its
// way out.
#[used]
#[link_section = ".fini_array"]
static AT_EXIT: extern "C" fn() = at_exit;
