//! Keeping an idle shim small. Every page of code that was ever executed stays mapped (and the
//! kernel maps up to 64 KiB around each page faulted in), so after start-up and a container's
//! creation most of the shim's executable, and of libc, counts in its resident set although an
//! idle shim runs almost none of it. Once a lifecycle step is done, [`release_code`] unmaps the
//! clean read-only file mappings (MADV_DONTNEED): the pages stay in the page cache and fault
//! back in when next used. Mappings holding private copies (relocated or written pages) are
//! left alone, since dropping those would lose data. It also returns free heap pages to the
//! kernel (malloc_trim).

use std::fs;

/// Unmaps the clean read-only file mappings (code and constants of the shim and its shared
/// libraries) and trims the heap.
pub fn release_code() {
    // SAFETY: malloc_trim only returns free memory of the allocator to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
    let Ok(smaps) = fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let perms = fields.next().unwrap_or("");
            let path = line.split_whitespace().nth(5).unwrap_or("");
            let deleted = line.ends_with("(deleted)");
            current = None;
            // Read-only (r-x or r--), private, backed by a file that is still in place (a
            // file replaced by rename keeps its old inode mapped, but be conservative).
            let read_only_private = perms.len() == 4
                && perms.starts_with('r')
                && &perms[1..2] == "-"
                && perms.ends_with('p');
            if path.starts_with('/') && !deleted && read_only_private {
                if let Some((a, b)) = first.split_once('-') {
                    if let (Ok(a), Ok(b)) =
                        (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
                    {
                        current = Some((a, b));
                    }
                }
            }
        } else if first == "Anonymous:" {
            if let Some((start, end)) = current.take() {
                // Not writable, so no page can become private between this check and the call.
                if fields.next() == Some("0") {
                    // SAFETY: the range is a whole read-only private file mapping without private
                    // (anonymous) pages; discarding its page table entries only makes later
                    // accesses fault the same file contents back in.
                    unsafe {
                        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn release_code_keeps_the_process_working() {
        super::release_code();
        // Code and constant data are still there.
        let v: Vec<String> = (0..100).map(|i| format!("{i:x}")).collect();
        assert_eq!(v[99], "63");
        super::release_code();
    }
}
