// The source of seeds/dwarf/kernel-types.elf, the dwarf fuzz target's seed: a small
// ELF executable whose DWARF describes kernel-like types (structs, unions, bitfields,
// enums, typedefs, arrays, pointers, qualifiers, function pointers) and whose symbol
// table has a few kernel symbols. Rebuild with:
//   gcc -g -O0 -nostdlib -static -Wl,--entry=init_task_entry -o \
//     tests/fuzz/seeds/dwarf/kernel-types.elf -Wl,--build-id=none tests/fuzz/seeds/dwarf_seed.c
struct list_head {
  struct list_head *next, *prev;
};
typedef unsigned int u32;
typedef long long s64;
enum state { RUNNING = 0, SLEEPING = 1, STOPPED = 4 };
union key {
  u32 id;
  char bytes[4];
};
struct mm_struct {
  unsigned long start_code, end_code, arg_start, arg_end;
  const volatile int users;
};
struct task_struct {
  volatile long state;
  unsigned int flags : 9, in_execve : 1, in_iowait : 1;
  struct list_head tasks;
  struct mm_struct* mm;
  int pid, tgid;
  char comm[16];
  enum state st;
  union key k;
  s64 (*fn)(struct task_struct*, int);
  struct task_struct* parent;
};
struct task_struct init_task;
const char linux_banner[] = "Linux version 6.1.0-fuzz (fuzz@nfm) #1 SMP\n";
void init_task_entry(void) {
  init_task.pid = linux_banner[0];
  for (;;) {
  }
}
