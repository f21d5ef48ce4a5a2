//! The store's calls into the operating system that the standard library does not
//! make, and with them every `unsafe` block of `store/`; each says why it is sound.
//!
//! Each function has one meaning on every platform and says what it does where the
//! platform has no such call:
//!
//! | function | Linux | macOS | Windows |
//! | --- | --- | --- | --- |
//! | [`free_space`] | `statvfs` | `statvfs` | `GetDiskFreeSpaceExW` |
//! | [`open_tmpfile`], [`link_open_file`] | `O_TMPFILE`, `linkat` | unsupported | unsupported |
//! | [`rename_no_replace`] | `renameat2(RENAME_NOREPLACE)` | `renamex_np(RENAME_EXCL)` | `MoveFileExW` without `MOVEFILE_REPLACE_EXISTING` |
//! | [`start_writeback`] | `sync_file_range` | nothing | nothing |
//! | [`set_direct`] | `O_DIRECT` | `F_NOCACHE` | unsupported |
//! | [`sync_filesystem`] | `syncfs` | unsupported | unsupported |

use std::fs::File;
use std::io;
use std::path::Path;

#[cfg(unix)]
use std::os::unix::io::AsRawFd;

/// The path as a C string, for the unix calls.
#[cfg(unix)]
fn cstring(path: &Path) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// The path as a NUL-terminated UTF-16 string, for the Windows calls.
#[cfg(windows)]
fn wide(path: &Path) -> io::Result<Vec<u16>> {
    use std::os::windows::ffi::OsStrExt;
    let mut wide: Vec<u16> = path.as_os_str().encode_wide().collect();
    if wide.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "path contains NUL",
        ));
    }
    wide.push(0);
    Ok(wide)
}

/// An error of the kind `Unsupported`, for a call the platform or filesystem lacks.
fn unsupported(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, what)
}

/// Bytes an unprivileged writer may still use on the filesystem of `path` (statvfs
/// `f_bavail`: the part reserved for root is not counted).
#[cfg(unix)]
pub(super) fn free_space(path: &Path) -> io::Result<u64> {
    let c = cstring(path)?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `st` points to writable memory
    // of the right type, which statvfs fills completely when it returns 0.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so `st` is initialised.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Bytes the calling user may still use on the volume of `path` (quotas counted).
#[cfg(windows)]
pub(super) fn free_space(path: &Path) -> io::Result<u64> {
    use windows_sys::Win32::Storage::FileSystem::GetDiskFreeSpaceExW;
    let w = wide(path)?;
    let mut available = 0u64;
    // SAFETY: `w` is a NUL-terminated UTF-16 path that outlives the call; `available`
    // is a u64 we own; the two other outputs are optional and passed as null.
    let ok = unsafe {
        GetDiskFreeSpaceExW(
            w.as_ptr(),
            &mut available,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(available)
}

/// Opens an inode with no name in `dir` (`O_TMPFILE`): invisible, and gone by itself
/// if the process dies. Give it a name with [`link_open_file`].
#[cfg(target_os = "linux")]
pub(super) fn open_tmpfile(dir: &Path) -> io::Result<File> {
    use std::os::unix::io::FromRawFd;
    let c = cstring(dir)?;
    // SAFETY: `c` is a valid NUL-terminated path; the returned descriptor is checked
    // and then owned by the File.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
            0o666 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a freshly opened descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Whether [`open_tmpfile`] failed because this kernel or filesystem has no
/// `O_TMPFILE` (rather than for a reason a named file would share).
#[cfg(target_os = "linux")]
pub(super) fn tmpfile_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL) | Some(libc::ENOENT)
    ) || e.kind() == io::ErrorKind::Unsupported
}

/// Gives the nameless file opened by [`open_tmpfile`] the name `target`; fails with
/// `AlreadyExists` rather than replace anything (`linkat` never replaces).
#[cfg(target_os = "linux")]
pub(super) fn link_open_file(file: &File, target: &Path) -> io::Result<()> {
    let to = cstring(target)?;
    let proc_path = std::ffi::CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|_| io::Error::other("fd path"))?;
    // SAFETY: both paths are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            proc_path.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.kind() == io::ErrorKind::AlreadyExists {
        return Err(err);
    }
    // Without /proc: link the descriptor itself (needs CAP_DAC_READ_SEARCH).
    let empty = std::ffi::CString::default();
    // SAFETY: as above; the descriptor is open and ours, and AT_EMPTY_PATH with an
    // empty path links that descriptor.
    let rc = unsafe {
        libc::linkat(
            file.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// No nameless files here: `Unsupported`, and the caller uses a named temporary.
#[cfg(not(target_os = "linux"))]
pub(super) fn open_tmpfile(_dir: &Path) -> io::Result<File> {
    Err(unsupported("O_TMPFILE"))
}

/// Whether [`open_tmpfile`] failed because it is not available here.
#[cfg(not(target_os = "linux"))]
pub(super) fn tmpfile_unsupported(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Unsupported
}

/// No nameless files here to give a name to.
#[cfg(not(target_os = "linux"))]
pub(super) fn link_open_file(_file: &File, _target: &Path) -> io::Result<()> {
    Err(unsupported("linking an open file"))
}

/// Renames `from` to `to` in one step that never replaces an existing `to`: fails with
/// `AlreadyExists` instead. Fails with `Unsupported` where the platform or the
/// filesystem has no such rename; the caller may then link and unlink.
#[cfg(target_os = "linux")]
pub(super) fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    let (f, t) = (cstring(from)?, cstring(to)?);
    // SAFETY: both paths are valid NUL-terminated strings that outlive the call;
    // renameat2 only reads them.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        // EINVAL: the filesystem has no RENAME_NOREPLACE; ENOSYS: the kernel has no
        // renameat2 (before 3.15).
        Some(libc::EINVAL) | Some(libc::ENOSYS) => Err(unsupported("renameat2 RENAME_NOREPLACE")),
        _ => Err(err),
    }
}

/// Renames `from` to `to` in one step that never replaces an existing `to`: fails with
/// `AlreadyExists` instead. Fails with `Unsupported` where the platform or the
/// filesystem has no such rename; the caller may then link and unlink.
#[cfg(target_os = "macos")]
pub(super) fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    let (f, t) = (cstring(from)?, cstring(to)?);
    // SAFETY: both paths are valid NUL-terminated strings that outlive the call;
    // renamex_np only reads them.
    let rc = unsafe { libc::renamex_np(f.as_ptr(), t.as_ptr(), libc::RENAME_EXCL) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        // The filesystem has no exclusive rename.
        Some(libc::ENOTSUP) | Some(libc::EINVAL) => Err(unsupported("renamex_np RENAME_EXCL")),
        _ => Err(err),
    }
}

/// Renames `from` to `to` in one step that never replaces an existing `to`: fails with
/// `AlreadyExists` instead (`MoveFileExW` without `MOVEFILE_REPLACE_EXISTING`; the
/// standard library opens files with `FILE_SHARE_DELETE`, so an open file moves).
#[cfg(windows)]
pub(super) fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    use windows_sys::Win32::Storage::FileSystem::{MoveFileExW, MOVEFILE_WRITE_THROUGH};
    let (f, t) = (wide(from)?, wide(to)?);
    // SAFETY: both are NUL-terminated UTF-16 paths that outlive the call; MoveFileExW
    // only reads them.
    let ok = unsafe { MoveFileExW(f.as_ptr(), t.as_ptr(), MOVEFILE_WRITE_THROUGH) };
    if ok == 0 {
        // ERROR_ALREADY_EXISTS and ERROR_FILE_EXISTS read as AlreadyExists.
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// No exclusive rename known here: the caller links and unlinks.
#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
pub(super) fn rename_no_replace(_from: &Path, _to: &Path) -> io::Result<()> {
    Err(unsupported("exclusive rename"))
}

/// Starts writing `len` bytes of `file` from `offset` back to the disk without waiting
/// for it. Only a hint to the kernel (Linux `sync_file_range`; nothing elsewhere): a
/// failure shows up in the final sync.
pub(super) fn start_writeback(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    // SAFETY: the descriptor is ours and open; the call only reads the arguments.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// Makes everything written to the filesystem that holds `file` durable, in one call
/// (Linux `syncfs`, which reports the write-back errors of the filesystem since 5.8);
/// `Unsupported` elsewhere, where each file is synced by itself.
#[cfg(target_os = "linux")]
pub(super) fn sync_filesystem(file: &File) -> io::Result<()> {
    // SAFETY: the descriptor is ours and open; syncfs only reads it.
    if unsafe { libc::syncfs(file.as_raw_fd()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes everything written to the filesystem that holds `file` durable, in one call
/// (Linux `syncfs`); `Unsupported` elsewhere, where each file is synced by itself.
#[cfg(not(target_os = "linux"))]
pub(super) fn sync_filesystem(file: &File) -> io::Result<()> {
    let _ = file;
    Err(unsupported("syncfs"))
}

/// Turns writing past the page cache on or off for the open file (shared by its
/// clones): `O_DIRECT` on Linux, `F_NOCACHE` on macOS. `Unsupported` elsewhere, where
/// files are written through the cache.
#[cfg(target_os = "linux")]
pub(super) fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, reading its status flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if on {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    // SAFETY: fcntl on a descriptor we own, setting its status flags.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Turns writing past the page cache on or off for the open file (shared by its
/// clones): `O_DIRECT` on Linux, `F_NOCACHE` on macOS. `Unsupported` elsewhere, where
/// files are written through the cache.
#[cfg(target_os = "macos")]
pub(super) fn set_direct(file: &File, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own; F_NOCACHE takes an int argument.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_NOCACHE, libc::c_int::from(on)) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Turns writing past the page cache on or off for the open file (shared by its
/// clones): `O_DIRECT` on Linux, `F_NOCACHE` on macOS. `Unsupported` elsewhere, where
/// files are written through the cache.
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub(super) fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let _ = (file, on);
    Err(unsupported("direct writes"))
}

/// Whether a direct write failed because the filesystem refuses direct writes after
/// all (`EINVAL`), so that the rest should go through the page cache.
#[cfg(unix)]
pub(super) fn direct_write_refused(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

/// Never: without [`set_direct`] there are no direct writes to refuse.
#[cfg(not(unix))]
pub(super) fn direct_write_refused(_e: &io::Error) -> bool {
    false
}
