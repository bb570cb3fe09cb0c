// Linux rootkits: kernel modules (Diamorphine, Reptile, Suterusu, Adore-ng, KoviD)
// and user-space LD_PRELOAD ones (Azazel, Jynx, BEURK, Father, libprocesshider).

rule Linux_Rootkit_Diamorphine : rootkit lkm
{
  meta:
    description = "Diamorphine LKM: its names and signal handling"
    family = "Diamorphine"
  strings:
    $n = "diamorphine" ascii
    $f1 = "hacked_kill" ascii
    $f2 = "hacked_getdents64" ascii
    $f3 = "module_hide" ascii
    $f4 = "give_root" ascii
  condition:
    $n or 3 of ($f*)
}

rule Linux_Rootkit_Reptile : rootkit lkm
{
  meta:
    description = "Reptile LKM and its user-space client"
    family = "Reptile"
  strings:
    $s1 = "reptile_init" ascii
    $s2 = "/reptile/reptile_cmd" ascii
    $s3 = "khook_" ascii
    $s4 = "hide_proc" ascii
    $s5 = "magic_packet" ascii
  condition:
    $s2 or ($s1 and 2 of ($s3, $s4, $s5))
}

rule Linux_Rootkit_Suterusu : rootkit lkm
{
  meta:
    description = "Suterusu LKM"
    family = "Suterusu"
  strings:
    $s1 = "suterusu" ascii nocase
    $s2 = "hijack_start" ascii
    $s3 = "hide_tcp4_port" ascii
    $s4 = "n_tcp4_seq_show" ascii
  condition:
    $s1 or 2 of ($s2, $s3, $s4)
}

rule Linux_Rootkit_Adore_NG : rootkit lkm
{
  meta:
    description = "Adore-ng LKM"
    family = "Adore-ng"
  strings:
    $s1 = "adore_" ascii
    $s2 = "adore-ng" ascii
    $s3 = "ELITE_UID" ascii
    $s4 = "orig_proc_lookup" ascii
  condition:
    2 of them
}

rule Linux_Rootkit_KoviD : rootkit lkm
{
  meta:
    description = "KoviD LKM"
    family = "KoviD"
  strings:
    $s1 = "kovid" ascii fullword
    $s2 = "/proc/kovid" ascii
    $s3 = "kv_hide_task" ascii
    $s4 = "kv_bd_" ascii
  condition:
    $s2 or 2 of ($s1, $s3, $s4)
}

rule Linux_Rootkit_Azazel : rootkit preload
{
  meta:
    description = "Azazel LD_PRELOAD rootkit"
    family = "Azazel"
  strings:
    $s1 = "HIDE_THIS_SHELL" ascii
    $s2 = "azazel" ascii nocase
    $s3 = "PAM_PORT" ascii
    $s4 = "CRYPT_LOW" ascii
    $s5 = "PLAIN_HIGH" ascii
  condition:
    3 of them
}

rule Linux_Rootkit_Jynx : rootkit preload
{
  meta:
    description = "Jynx/Jynx2 LD_PRELOAD rootkit"
    family = "Jynx"
  strings:
    $s1 = "jynx" ascii nocase
    $s2 = "XxJynx" ascii
    $s3 = "MAGIC_GID" ascii
    $s4 = "/usr/lib/libssl.so.1.1/" ascii
  condition:
    $s2 or ($s1 and any of ($s3, $s4))
}

rule Linux_Rootkit_BEURK : rootkit preload
{
  meta:
    description = "BEURK LD_PRELOAD rootkit"
    family = "BEURK"
  strings:
    $s1 = "BEURK" ascii
    $s2 = "is_attacker" ascii
    $s3 = "is_hidden_file" ascii
    $s4 = "drop_shell_backdoor" ascii
  condition:
    $s1 and any of ($s2, $s3, $s4)
}

rule Linux_Rootkit_Libprocesshider : rootkit preload
{
  meta:
    description = "libprocesshider: readdir() filtering a process name"
    family = "libprocesshider"
  strings:
    $s1 = "process_to_filter" ascii
    $s2 = "get_process_name" ascii
    $s3 = "original_readdir" ascii
    $s4 = "/proc/self/fd/%d" ascii
  condition:
    3 of them
}

rule Linux_Rootkit_Preload_Hook_Set : rootkit preload
{
  meta:
    description = "A preload library resolving the real libc functions it hides behind"
  strings:
    $d = "dlsym" ascii
    $n = "RTLD_NEXT" ascii
    $h1 = "readdir64" ascii fullword
    $h2 = "fopen64" ascii fullword
    $h3 = "__lxstat64" ascii fullword
    $p = "/etc/ld.so.preload" ascii
    $x = "hide" ascii nocase
  condition:
    $d and $n and $p and $x and 2 of ($h*)
}

rule Linux_Rootkit_Syscall_Table_Hook : rootkit lkm
{
  meta:
    description = "An LKM that looks up and rewrites the syscall table"
  strings:
    $t = "sys_call_table" ascii
    $k = "kallsyms_lookup_name" ascii
    $w1 = "write_cr0" ascii
    $w2 = "native_write_cr0" ascii
    $h = /hook(ed)?_(sys_)?(getdents|kill|read|open)/ ascii
  condition:
    $t and $k and any of ($w*) and $h
}
