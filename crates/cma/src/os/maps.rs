//! Which mapped file holds a code address, from `/proc/self/maps` read with
//! open/read/close into a buffer on the stack: usable in a signal handler
//! (`dl_iterate_phdr` takes the loader's lock, which the interrupted thread
//! may hold). For the report of a sampled block's stacks: each address is
//! printed with its module and its offset from the module's load address,
//! which `cma run` turns into a function and a line after the program
//! stopped.

use super::process::errno;

/// Where a code address lies.
pub(crate) struct Module<'a> {
    /// The mapped file's path (cut to the caller's buffer).
    pub(crate) path: &'a [u8],
    /// The address of the file's first mapping (file offset 0): the
    /// module's load address, from which the printed offsets count.
    pub(crate) base: usize,
}

/// Longest `/proc/self/maps` line kept; a longer path is cut.
const LINE_MAX: usize = 512;

/// The buffers of a pass over the maps (about 2 KiB): the caller keeps
/// them where it has room (the report path, in static memory while it
/// reports: a signal handler may run on a small alternate stack).
pub(crate) struct MapsScratch {
    chunk: [u8; 1024],
    line: [u8; LINE_MAX],
    /// The path of the last mapping at file offset 0 (see `Scan::base`).
    base_path: [u8; LINE_MAX],
}

impl MapsScratch {
    pub(crate) const fn new() -> MapsScratch {
        MapsScratch {
            chunk: [0; 1024],
            line: [0; LINE_MAX],
            base_path: [0; LINE_MAX],
        }
    }
}

/// The mapped file that holds `addr`; `None` for an address in no file
/// mapping (or when /proc cannot be read).
pub(crate) fn module_of(addr: usize, scratch: &mut MapsScratch) -> Option<Module<'_>> {
    // SAFETY: a NUL-terminated path and valid flags.
    let fd = unsafe {
        libc::open(
            c"/proc/self/maps".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    let MapsScratch {
        chunk,
        line,
        base_path,
    } = scratch;
    let mut scan = Scan {
        addr,
        line,
        len: 0,
        base: 0,
        base_path,
        base_len: 0,
        found: None,
    };
    'read: loop {
        // SAFETY: `chunk` is valid for writes of its length.
        let n = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            break;
        }
        for &b in &chunk[..n as usize] {
            if b == b'\n' {
                scan.end_line();
                if scan.found.is_some() {
                    break 'read;
                }
            } else if scan.len < LINE_MAX {
                scan.line[scan.len] = b;
                scan.len += 1;
            }
        }
    }
    // SAFETY: `fd` is ours and open.
    unsafe { libc::close(fd) };
    let base = scan.found?;
    let len = scan.base_len;
    Some(Module {
        path: &scan.base_path[..len],
        base,
    })
}

/// The state of one pass over the maps.
struct Scan<'a> {
    addr: usize,
    line: &'a mut [u8; LINE_MAX],
    len: usize,
    /// The start of the last mapping at file offset 0, and its path: the
    /// module that the following mappings of the same path belong to.
    base: usize,
    base_path: &'a mut [u8; LINE_MAX],
    base_len: usize,
    /// The load address of the module holding `addr`, once found.
    found: Option<usize>,
}

impl Scan<'_> {
    fn end_line(&mut self) {
        let len = core::mem::replace(&mut self.len, 0);
        let Some(m) = parse_line(&self.line[..len]) else {
            return;
        };
        if m.path.first() != Some(&b'/') {
            return;
        }
        let same_module = self.base_path[..self.base_len] == *m.path;
        if m.offset == 0 && !same_module {
            self.base = m.start;
            self.base_len = m.path.len();
            self.base_path[..m.path.len()].copy_from_slice(m.path);
        }
        if (m.start..m.end).contains(&self.addr) {
            if self.base_path[..self.base_len] != *m.path {
                // No offset-0 mapping seen for this file: count from where
                // its offset 0 would be.
                self.base = m.start.wrapping_sub(m.offset);
                self.base_len = m.path.len();
                self.base_path[..m.path.len()].copy_from_slice(m.path);
            }
            self.found = Some(self.base);
        }
    }
}

/// One line of `/proc/self/maps`: `start-end perms offset dev inode path`.
struct Mapping<'a> {
    start: usize,
    end: usize,
    offset: usize,
    path: &'a [u8],
}

fn parse_line(line: &[u8]) -> Option<Mapping<'_>> {
    let mut fields = line.splitn(6, |&b| b == b' ');
    let range = fields.next()?;
    let _perms = fields.next()?;
    let offset = hex(fields.next()?)?;
    let _dev = fields.next()?;
    let _inode = fields.next()?;
    let rest = fields.next().unwrap_or(&[]);
    let path_start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    let dash = range.iter().position(|&b| b == b'-')?;
    Some(Mapping {
        start: hex(&range[..dash])?,
        end: hex(&range[dash + 1..])?,
        offset,
        path: &rest[path_start..],
    })
}

fn hex(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let mut n = 0usize;
    for &d in digits {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return None,
        };
        n = (n << 4) | v as usize;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_with_and_without_a_path() {
        let m = parse_line(b"55d0c0000000-55d0c0001000 r--p 00002000 08:01 1234    /usr/bin/prog")
            .unwrap();
        assert_eq!(
            (m.start, m.end, m.offset),
            (0x55d0c0000000, 0x55d0c0001000, 0x2000)
        );
        assert_eq!(m.path, b"/usr/bin/prog");
        let anon = parse_line(b"7f0000000000-7f0000001000 rw-p 00000000 00:00 0 ").unwrap();
        assert_eq!(anon.path, b"");
        assert!(parse_line(b"garbage").is_none());
    }

    #[test]
    fn this_function_lies_in_this_test_binary() {
        let mut scratch = MapsScratch::new();
        let here = lines_parse_with_and_without_a_path as *const () as usize;
        let m = module_of(here, &mut scratch).expect("the test binary is mapped");
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_name().unwrap().to_str().unwrap();
        assert!(
            core::str::from_utf8(m.path).unwrap().ends_with(name),
            "{:?}",
            core::str::from_utf8(m.path)
        );
        assert!(m.base <= here && here - m.base < 1 << 30);
    }
}
