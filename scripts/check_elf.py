#!/usr/bin/env python3
"""Checks that an executable is a static ELF for the given architecture.

Usage: check_elf.py FILE x86_64|aarch64

Reads the ELF header and program headers itself, so it needs no `file` or binutils.
Static means no program interpreter (PT_INTERP) and no shared library (DT_NEEDED): a
static-pie executable, as Rust's musl targets produce, still has a PT_DYNAMIC segment for
its own relocations, which is why the check looks for DT_NEEDED, not for PT_DYNAMIC.
"""

import struct
import sys

MACHINES = {"x86_64": 62, "aarch64": 183}
PT_DYNAMIC, PT_INTERP = 2, 3
DT_NULL, DT_NEEDED = 0, 1


def check(path: str, arch: str) -> str:
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF":
        raise ValueError("not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    (e_type, e_machine) = struct.unpack_from("<HH", data, 16)
    if e_machine != MACHINES[arch]:
        found = {v: k for k, v in MACHINES.items()}.get(e_machine, f"machine {e_machine}")
        raise ValueError(f"built for {found}, expected {arch}")
    (e_phoff,) = struct.unpack_from("<Q", data, 32)
    (e_phentsize, e_phnum) = struct.unpack_from("<HH", data, 54)
    needed = 0
    for i in range(e_phnum):
        p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, e_phoff + i * e_phentsize
        )
        if p_type == PT_INTERP:
            interp = data[p_offset : p_offset + p_filesz].rstrip(b"\0").decode()
            raise ValueError(f"dynamically linked: asks for the interpreter {interp}")
        if p_type == PT_DYNAMIC:
            for off in range(p_offset, p_offset + p_filesz, 16):
                tag, _val = struct.unpack_from("<qQ", data, off)
                if tag == DT_NULL:
                    break
                needed += tag == DT_NEEDED
    if needed:
        raise ValueError(f"dynamically linked: needs {needed} shared libraries")
    kind = "static-pie" if e_type == 3 else "static"
    return f"{path}: {arch}, {kind}, {len(data)} bytes"


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[2] not in MACHINES:
        print(f"usage: {sys.argv[0]} FILE {'|'.join(MACHINES)}", file=sys.stderr)
        return 2
    try:
        print(check(sys.argv[1], sys.argv[2]))
    except (OSError, ValueError, struct.error) as e:
        print(f"{sys.argv[1]}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
