// Reverse and bind shells, web shells, and the one-liners that start them.

rule Linux_Reverse_Shell_Bash_TCP : shell
{
  meta:
    description = "bash reverse shell through /dev/tcp"
  strings:
    $a = /bash -i >& ?\/dev\/tcp\/[0-9.]{7,15}\/[0-9]{2,5} 0>&1/ ascii
    $b = /sh -i >& ?\/dev\/tcp\/[0-9.]{7,15}\/[0-9]{2,5}/ ascii
  condition:
    any of them
}

rule Linux_Reverse_Shell_Python : shell
{
  meta:
    description = "python reverse shell one-liner"
  strings:
    $s = "socket.socket(socket.AF_INET,socket.SOCK_STREAM)" ascii
    $d1 = "os.dup2(s.fileno(),0)" ascii
    $d2 = "pty.spawn(\"/bin/sh\")" ascii
    $d3 = "subprocess.call([\"/bin/sh\",\"-i\"])" ascii
  condition:
    $s and any of ($d*)
}

rule Linux_Reverse_Shell_Perl : shell
{
  meta:
    description = "perl reverse shell one-liner"
  strings:
    $s = "socket(S,PF_INET,SOCK_STREAM,getprotobyname(\"tcp\"))" ascii
    $e = "exec(\"/bin/sh -i\")" ascii
  condition:
    all of them
}

rule Linux_Reverse_Shell_Netcat : shell
{
  meta:
    description = "netcat or mkfifo reverse shell"
  strings:
    $n1 = /nc(at)? -e \/bin\/(ba)?sh [0-9.]{7,15} [0-9]{2,5}/ ascii
    $n2 = /mkfifo \/tmp\/[a-z]{1,8}; ?nc [0-9.]{7,15} [0-9]{2,5} 0<\/tmp\/[a-z]{1,8}/ ascii
    $n3 = "rm /tmp/f;mkfifo /tmp/f;cat /tmp/f|/bin/sh -i 2>&1|nc" ascii
  condition:
    any of them
}

rule Linux_Reverse_Shell_Socat : shell
{
  meta:
    description = "socat reverse shell with a pty"
  strings:
    $s = /socat (tcp|TCP)(-connect|4):[0-9.]{7,15}:[0-9]{2,5} (exec|EXEC):['"]?(bash|sh) -li['"]?,pty/ ascii
  condition:
    $s
}

rule Linux_Bind_Shell_Generic : shell
{
  meta:
    description = "A bind shell's banner and exec of a shell over a socket"
  strings:
    $b1 = "bindshell" ascii nocase
    $b2 = "Password: " ascii
    $e = "/bin/sh" ascii
    $x = { 6A 29 58 99 6A 02 5F 6A 01 5E 0F 05 }
  condition:
    $x or ($b1 and $b2 and $e)
}

rule Shellcode_x64_Execve_Binsh : shell shellcode
{
  meta:
    description = "x86-64 execve(\"/bin//sh\") shellcode"
  strings:
    $a = { 48 31 D2 48 BB 2F 2F 62 69 6E 2F 73 68 48 C1 EB 08 53 48 89 E7 }
    $b = { 48 B8 2F 62 69 6E 2F 2F 73 68 50 48 89 E7 [0-8] B0 3B 0F 05 }
  condition:
    any of them
}

rule Shellcode_x64_Reverse_TCP : shell shellcode
{
  meta:
    description = "x86-64 connect-back shellcode: socket, connect, dup2 loop"
  strings:
    $sock = { 6A 29 58 6A 02 5F 6A 01 5E 99 0F 05 }
    $conn = { 6A 2A 58 [0-12] 0F 05 }
    $dup = { 6A 21 58 0F 05 }
  condition:
    $sock and $conn and $dup
}

rule Webshell_PHP_Eval_Post : webshell php
{
  meta:
    description = "PHP one-line web shell evaluating a request parameter"
  strings:
    $a = /<\?php\s*@?eval\(\$_(POST|GET|REQUEST)\[/ ascii nocase
    $b = /@?assert\(\$_(POST|GET|REQUEST)\[/ ascii nocase
    $c = /system\(\$_(GET|POST|REQUEST)\['cmd'\]\)/ ascii nocase
  condition:
    any of them
}

rule Webshell_PHP_Obfuscated : webshell php
{
  meta:
    description = "PHP shell unpacking itself"
  strings:
    $e = "eval(gzinflate(base64_decode(" ascii nocase
    $r = "eval(str_rot13(" ascii nocase
    $c = "create_function(" ascii nocase
    $p = "preg_replace(\"/.*/e\"" ascii nocase
  condition:
    any of ($e, $r, $p) or ($c and $e)
}

rule Webshell_China_Chopper : webshell
{
  meta:
    description = "China Chopper's server side"
  strings:
    $php = /<\?php @eval\(\$_POST\['[^']{1,16}'\]\);\?>/ ascii
    $jsp = "Request.getParameter(\"z0\")" ascii
    $asp = "<%@ Page Language=\"Jscript\"%><%eval(Request.Item[" ascii
  condition:
    any of them
}

rule Webshell_JSP_Runtime_Exec : webshell jsp
{
  meta:
    description = "JSP shell running a request parameter"
  strings:
    $r = "Runtime.getRuntime().exec(request.getParameter(" ascii
    $p = "ProcessBuilder(request.getParameter(" ascii
  condition:
    any of them
}

rule Webshell_WSO_Filesman : webshell php
{
  meta:
    description = "WSO/FilesMan web shell"
  strings:
    $s1 = "FilesMan" ascii
    $s2 = "WSO " ascii
    $s3 = "wso_version" ascii
    $s4 = "actionSecInfo" ascii
  condition:
    3 of them
}
