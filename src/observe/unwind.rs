//! Unwinding a copied stack (Linux, x86_64 and aarch64), on the watcher
//! thread: the registers and stack window that `signal` or the `/proc`
//! path copied are walked with the DWARF call-frame information
//! (`.eh_frame`, found through `.eh_frame_hdr`) of the objects loaded in
//! the process, by `framehop`.
//!
//! The objects are listed with `dl_iterate_phdr`; their unwind tables are
//! copied out of memory while the loader's lock is held (so an object
//! unloaded meanwhile is never read), once, and again only when the loader
//! says an object was loaded or unloaded since. Code without unwind
//! tables in a loaded object (a JIT's code, registered with the unwinder
//! at run time) ends the walk there.

use std::ffi::CStr;
use std::ops::Range;

use framehop::{
    CacheNative, ExplicitModuleSectionInfo, FrameAddress, MayAllocateDuringUnwind, Module,
    UnwindRegsNative, Unwinder, UnwinderNative,
};

use super::capture::Captured;
use crate::sync::{lock, Mutex};

/// The most frames one walk returns.
const MAX_FRAMES: usize = 256;

struct Modules {
    /// The loader's counts of objects loaded and unloaded when listed.
    generation: (u64, u64),
    /// Where the objects' code and data are mapped.
    ranges: Vec<Range<u64>>,
    unwinder: UnwinderNative<Vec<u8>, MayAllocateDuringUnwind>,
    cache: CacheNative<MayAllocateDuringUnwind>,
}

/// Only the watcher thread unwinds; the lock keeps that true for tests.
static MODULES: Mutex<Option<Modules>> = Mutex::new(None);

/// The instruction addresses of `captured`'s stack, innermost first: the
/// interrupted program counter, then return addresses. Register order
/// (`signal`): pc, sp, frame pointer, link register.
pub(crate) fn unwind(captured: &Captured) -> Vec<usize> {
    let mut modules = lock(&MODULES);
    let generation = loader_generation();
    if modules
        .as_ref()
        .is_none_or(|modules| modules.generation != generation)
    {
        *modules = Some(load_modules(generation));
    }
    let modules = modules.as_mut().expect("just loaded");
    let [pc, sp, fp, lr] = captured.regs.map(|reg| reg as u64);
    let mut frames = walk(modules, captured, pc, sp, fp, lr);
    if fp == 0 {
        // The `/proc` path knows no frame pointer, and code built with
        // frame pointers (Rust's std is) finds its caller through it. Try
        // the innermost frame records on the copied stack (a word followed
        // by a code address: the saved frame pointer and the return
        // address) and keep the walk that goes furthest.
        let candidates: Vec<u64> = frame_records(modules, captured)
            .take(FRAME_RECORD_TRIES)
            .collect();
        for candidate in candidates {
            let other = walk(modules, captured, pc, sp, candidate, lr);
            if other.len() > frames.len() {
                frames = other;
            }
        }
    }
    frames
}

/// How many frame records the `/proc` path tries.
const FRAME_RECORD_TRIES: usize = 8;

/// The addresses on the copied stack that look like frame records, lowest
/// first.
fn frame_records<'a>(
    modules: &'a Modules,
    captured: &'a Captured,
) -> impl Iterator<Item = u64> + 'a {
    let start = captured.stack_start as u64;
    let words: Vec<u64> = captured
        .stack
        .chunks_exact(8)
        .map(|word| u64::from_ne_bytes(word.try_into().expect("8 bytes")))
        .collect();
    (0..words.len().saturating_sub(1)).filter_map(move |i| {
        let here = start + 8 * i as u64;
        // The saved frame pointer is not checked: a caller built without
        // frame pointers leaves anything in that register.
        let ret = words[i + 1];
        modules
            .ranges
            .iter()
            .any(|range| range.contains(&ret))
            .then_some(here)
    })
}

/// One walk from the given registers.
fn walk(
    modules: &mut Modules,
    captured: &Captured,
    pc: u64,
    sp: u64,
    fp: u64,
    lr: u64,
) -> Vec<usize> {
    #[cfg(target_arch = "x86_64")]
    let regs = {
        let _ = lr;
        UnwindRegsNative::new(pc, sp, fp)
    };
    #[cfg(target_arch = "aarch64")]
    let regs = UnwindRegsNative::new(lr, sp, fp);
    let start = captured.stack_start as u64;
    let stack = &captured.stack;
    let mut read_stack = |address: u64| -> Result<u64, ()> {
        let offset = address.checked_sub(start).ok_or(())? as usize;
        let word = stack.get(offset..offset + 8).ok_or(())?;
        Ok(u64::from_ne_bytes(word.try_into().map_err(|_| ())?))
    };
    let mut frames = Vec::new();
    let mut walk = modules
        .unwinder
        .iter_frames(pc, regs, &mut modules.cache, &mut read_stack);
    while let Ok(Some(frame)) = walk.next() {
        frames.push(match frame {
            FrameAddress::InstructionPointer(ip) => ip as usize,
            FrameAddress::ReturnAddress(ra) => u64::from(ra) as usize,
        });
        if frames.len() == MAX_FRAMES {
            break;
        }
    }
    frames
}

/// The loader's counts of loads and unloads (glibc and musl keep them).
fn loader_generation() -> (u64, u64) {
    unsafe extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        size: libc::size_t,
        out: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid `info` of `size` bytes for the
        // call; `out` is the `(u64, u64)` below. The counts are read only
        // where `size` says the loader has them.
        unsafe {
            if size >= std::mem::size_of::<libc::dl_phdr_info>() {
                *out.cast::<(u64, u64)>() = ((*info).dlpi_adds, (*info).dlpi_subs);
            }
        }
        1 // the counts are the same in every entry: stop
    }
    let mut generation = (0u64, 0u64);
    // SAFETY: `first` matches the callback type and only writes through
    // the pointer to `generation`, alive across the call.
    unsafe { libc::dl_iterate_phdr(Some(first), (&mut generation as *mut (u64, u64)).cast()) };
    generation
}

fn load_modules(generation: (u64, u64)) -> Modules {
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        out: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid `info` whose program headers and
        // mapped segments stay mapped for the call (it holds its lock);
        // `out` is the `Vec` below.
        unsafe {
            if let Some(module) = module_of(&*info) {
                (*out.cast::<Vec<Module<Vec<u8>>>>()).push(module);
            }
        }
        0
    }
    let mut found: Vec<Module<Vec<u8>>> = Vec::new();
    // SAFETY: `each` matches the callback type and only pushes onto
    // `found`, alive across the call.
    unsafe { libc::dl_iterate_phdr(Some(each), (&mut found as *mut Vec<_>).cast()) };
    let mut unwinder = UnwinderNative::new();
    let mut ranges = Vec::with_capacity(found.len());
    for module in found {
        ranges.push(module.avma_range());
        unwinder.add_module(module);
    }
    Modules {
        generation,
        ranges,
        unwinder,
        cache: CacheNative::new(),
    }
}

/// One loaded object's unwind tables, copied.
///
/// # Safety
/// `info` is the loader's, during its `dl_iterate_phdr` callback: its
/// program headers and its mapped segments are readable.
unsafe fn module_of(info: &libc::dl_phdr_info) -> Option<Module<Vec<u8>>> {
    let bias = info.dlpi_addr;
    // SAFETY: the loader's program headers, `dlpi_phnum` of them.
    let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
    let loads: Vec<Range<u64>> = headers
        .iter()
        .filter(|header| header.p_type == libc::PT_LOAD)
        .map(|header| header.p_vaddr..header.p_vaddr + header.p_memsz)
        .collect();
    let text = headers
        .iter()
        .find(|header| header.p_type == libc::PT_LOAD && header.p_flags & libc::PF_X != 0)
        .map(|header| header.p_vaddr..header.p_vaddr + header.p_memsz)?;
    let hdr = headers
        .iter()
        .find(|header| header.p_type == libc::PT_GNU_EH_FRAME)
        .map(|header| header.p_vaddr..header.p_vaddr + header.p_memsz)?;
    // SAFETY: the segment is mapped (it lies in a PT_LOAD of this object).
    let hdr_bytes = unsafe {
        std::slice::from_raw_parts(
            (bias + hdr.start) as *const u8,
            (hdr.end - hdr.start) as usize,
        )
    }
    .to_vec();
    let eh_frame_start = eh_frame_address(&hdr_bytes, hdr.start)?;
    // The table's length is not recorded: it runs at most to the end of
    // the segment that holds it.
    let segment = loads.iter().find(|load| load.contains(&eh_frame_start))?;
    let eh_frame = eh_frame_start..segment.end;
    // SAFETY: within a PT_LOAD segment of this object, mapped.
    let eh_frame_bytes = unsafe {
        std::slice::from_raw_parts(
            (bias + eh_frame.start) as *const u8,
            (eh_frame.end - eh_frame.start) as usize,
        )
    }
    .to_vec();
    let low = loads.iter().map(|load| load.start).min()?;
    let high = loads.iter().map(|load| load.end).max()?;
    let name = if info.dlpi_name.is_null() {
        String::new()
    } else {
        // SAFETY: a NUL-terminated name of the loader's.
        unsafe { CStr::from_ptr(info.dlpi_name) }
            .to_string_lossy()
            .into_owned()
    };
    let sections = ExplicitModuleSectionInfo {
        base_svma: 0,
        text_svma: Some(text),
        eh_frame_svma: Some(eh_frame),
        eh_frame: Some(eh_frame_bytes),
        eh_frame_hdr_svma: Some(hdr),
        eh_frame_hdr: Some(hdr_bytes),
        ..Default::default()
    };
    Some(Module::new(name, bias + low..bias + high, bias, sections))
}

/// Where `.eh_frame` starts (as stated in the object), from the header of
/// `.eh_frame_hdr` (version 1) at `hdr_address`.
fn eh_frame_address(hdr: &[u8], hdr_address: u64) -> Option<u64> {
    const PCREL: u8 = 0x10;
    const DATAREL: u8 = 0x30;
    let (&[version, encoding, _, _], rest) = hdr.split_first_chunk::<4>()?;
    if version != 1 {
        return None;
    }
    let value = match encoding & 0x0f {
        0x03 => u64::from(u32::from_ne_bytes(*rest.first_chunk()?)),
        0x0b => i64::from(i32::from_ne_bytes(*rest.first_chunk()?)) as u64,
        0x00 | 0x04 | 0x0c => u64::from_ne_bytes(*rest.first_chunk()?),
        _ => return None,
    };
    match encoding & 0x70 {
        0 => Some(value),
        PCREL => Some((hdr_address + 4).wrapping_add(value)),
        DATAREL => Some(hdr_address.wrapping_add(value)),
        _ => None,
    }
}
