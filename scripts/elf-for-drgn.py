#!/usr/bin/env python3
"""Copies a QEMU ELF dump into the shape a kernel's own vmcore has, which drgn and
crash need and nfm does not: a VMCOREINFO note (QEMU writes one only when the guest
has -device vmcoreinfo) and a PT_LOAD mapping the kernel image by its
kernel-virtual address. The text is read from the dump itself, at the
guest-physical page given (nfm's profile cache remembers it: the second field of
vmcoreinfo-hints). Used by scripts/one-shot-vs-drgn.sh.

  elf-for-drgn.py IN.elf VMCOREINFO_PAGE_HEX OUT.elf
"""
import struct
import sys

PHDR = "<IIQQQQQQ"  # type, flags, offset, vaddr, paddr, filesz, memsz, align
START_KERNEL_MAP = 0xFFFFFFFF80000000
IMAGE_SPAN = 64 << 20  # enough for the kernel's text and data

src, page, dst = sys.argv[1], int(sys.argv[2], 16), sys.argv[3]
with open(src, "rb") as f:
    data = f.read()
if data[:4] != b"\x7fELF" or data[4] != 2:
    sys.exit(f"{src}: not a 64-bit ELF file")
phoff, = struct.unpack_from("<Q", data, 0x20)
phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
phdrs = [list(struct.unpack_from(PHDR, data, phoff + i * phentsize)) for i in range(phnum)]
notes = [p for p in phdrs if p[0] == 4]
loads = [p for p in phdrs if p[0] == 1]
if len(notes) != 1:
    sys.exit(f"{src}: expected one PT_NOTE segment, found {len(notes)}")


def file_offset(pa):
    for p in loads:
        if p[4] <= pa < p[4] + p[5]:
            return p[2] + pa - p[4]
    sys.exit(f"{src}: physical {pa:#x} is in no segment")


at = file_offset(page)
text = data[at:at + 4096].split(b"\0", 1)[0]
if not text.startswith(b"OSRELEASE="):
    sys.exit(f"{src}: no VMCOREINFO text at physical {page:#x}")
info = dict(line.split("=", 1) for line in text.decode().splitlines() if "=" in line)
stext = int(info["SYMBOL(_stext)"], 16)
phys_base = int(info["NUMBER(phys_base)"])
stext_pa = stext - START_KERNEL_MAP + phys_base

name = b"VMCOREINFO\0"
pad = lambda b: b + b"\0" * (-len(b) % 4)
new_notes = data[notes[0][2]:notes[0][2] + notes[0][5]]
new_notes += struct.pack("<III", len(name), len(text), 0) + pad(name) + pad(text)
first_load = min(p[2] for p in loads)
delta = len(new_notes) - notes[0][5]
head = bytearray(data[:notes[0][2]]) + new_notes + data[notes[0][2] + notes[0][5]:first_load]
for p in phdrs:
    if p[0] == 4:
        p[5] = p[6] = len(new_notes)
    elif p[2] >= first_load:
        p[2] += delta
# (file_offset() reads the moved segments now)
alias = [1, 7, file_offset(stext_pa), stext, stext_pa, IMAGE_SPAN, IMAGE_SPAN, 0]
phdrs.append(alias)
# The program headers move to the end of the file: there is no room for one more.
new_phoff = len(head) + len(data) - first_load
new_phoff += -new_phoff % 8
struct.pack_into("<Q", head, 0x20, new_phoff)
struct.pack_into("<H", head, 0x38, len(phdrs))
with open(dst, "wb") as f:
    f.write(head)
    f.write(memoryview(data)[first_load:])
    f.write(b"\0" * (new_phoff - f.tell()))
    for p in phdrs:
        f.write(struct.pack(PHDR, *p))
print(f"{dst}: VMCOREINFO note ({info['OSRELEASE']}) and the kernel image at {stext:#x} added")
