// IoT and Linux botnets: Mirai and its descendants, Gafgyt/Bashlite, Tsunami,
// XorDDoS, Mozi, Kaiji.

rule Linux_Mirai_Credentials : botnet mirai
{
  meta:
    description = "Mirai's table of telnet credentials (XOR-obfuscated and plain)"
    family = "Mirai"
  strings:
    $c1 = "xc3511" ascii
    $c2 = "vizxv" ascii
    $c3 = "7ujMko0admin" ascii
    $c4 = "Zte521" ascii
    $c5 = "hi3518" ascii
    $c6 = "jvbzd" ascii
    $c7 = "klv123" ascii
    $c8 = "ikwb" ascii
  condition:
    5 of them
}

rule Linux_Mirai_Attack_Vectors : botnet mirai
{
  meta:
    description = "Mirai's attack function names and killer strings"
    family = "Mirai"
  strings:
    $a1 = "attack_udp_generic" ascii
    $a2 = "attack_tcp_syn" ascii
    $a3 = "attack_gre_eth" ascii
    $a4 = "attack_app_http" ascii
    $k1 = "/dev/watchdog" ascii
    $k2 = "/dev/misc/watchdog" ascii
    $s1 = "killer_kill_by_port" ascii
  condition:
    3 of ($a*) or ($s1 and any of ($k*))
}

rule Linux_Mirai_Scanner_Table : botnet mirai
{
  meta:
    description = "Mirai's XOR table key and scanner telnet prompts"
    family = "Mirai"
  strings:
    $key = { DE AD BE EF }
    $p1 = "ogin:" ascii
    $p2 = "enter" ascii
    $p3 = "assword" ascii
    $busy = "/bin/busybox MIRAI" ascii
    $ecchi = "ECCHI: applet not found" ascii
  condition:
    $busy or $ecchi or ($key and all of ($p*) and $busy)
}

rule Linux_Gafgyt_Commands : botnet gafgyt
{
  meta:
    description = "Gafgyt/Bashlite IRC-style flood commands"
    family = "Gafgyt"
  strings:
    $c1 = "HOLD Flooding" ascii nocase
    $c2 = "JUNK Flooding" ascii nocase
    $c3 = "UDP Flooding" ascii nocase
    $c4 = "TCP Flooding" ascii nocase
    $c5 = "KILLATTK" ascii
    $c6 = "LOLNOGTFO" ascii
    $c7 = "PING" ascii fullword
    $c8 = "GETLOCALIP" ascii
  condition:
    4 of them
}

rule Linux_Gafgyt_Scanner : botnet gafgyt
{
  meta:
    description = "Bashlite's telnet scanner and payload download line"
    family = "Gafgyt"
  strings:
    $s1 = "cd /tmp || cd /var/run || cd /mnt || cd /root || cd /" ascii
    $s2 = "[Telnet] Login" ascii
    $s3 = "REPORT %s:%s:%s" ascii
    $s4 = "busybox tftp -r" ascii
  condition:
    2 of them
}

rule Linux_Tsunami_IRC : botnet tsunami
{
  meta:
    description = "Tsunami/Kaiten IRC bot commands"
    family = "Tsunami"
  strings:
    $c1 = "NOTICE %s :Kaiten" ascii
    $c2 = "NOTICE %s :TSUNAMI" ascii
    $c3 = "NOTICE %s :PAN" ascii
    $c4 = "NOTICE %s :UNKNOWNSERV" ascii
    $c5 = ":Killing pid" ascii
    $c6 = "GETSPOOFS" ascii
  condition:
    3 of them
}

rule Linux_XorDDoS_Config : botnet xorddos
{
  meta:
    description = "XorDDoS: its XOR key and rootkit hiding helpers"
    family = "XorDDoS"
  strings:
    $key = "BB2FA36AAA9541F0" ascii
    $f1 = "HidePidPort" ascii
    $f2 = "InstallSYS" ascii
    $f3 = "daemonize" ascii
    $f4 = "/etc/cron.hourly/gcc.sh" ascii
  condition:
    $key or 3 of ($f*)
}

rule Linux_Mozi_P2P : botnet mozi
{
  meta:
    description = "Mozi's DHT bootstrap nodes and config tags"
    family = "Mozi"
  strings:
    $d1 = "dht.transmissionbt.com" ascii
    $d2 = "router.bittorrent.com" ascii
    $d3 = "bttracker.debian.org" ascii
    $t1 = "[ss]" ascii
    $t2 = "[hp]" ascii
    $t3 = "[cpu]" ascii
    $t4 = "[rn]" ascii
  condition:
    2 of ($d*) and 3 of ($t*)
}

rule Linux_Kaiji_Functions : botnet kaiji
{
  meta:
    description = "Kaiji (Go) attack function names"
    family = "Kaiji"
  strings:
    $f1 = "main.Ares_Tcp" ascii
    $f2 = "main.Ares_L3_Udp" ascii
    $f3 = "main.Ares_ipspoof" ascii
    $f4 = "main.Killcpu" ascii
    $f5 = "main.Link_ssh" ascii
  condition:
    3 of them
}

rule Linux_Hajime_Stage : botnet hajime
{
  meta:
    description = "Hajime's stage-one download loop and message"
    family = "Hajime"
  strings:
    $m = "Just a white hat, securing some systems." ascii
    $l = { 2F 2E 69 ?? ?? ?? 2E 73 68 }
    $e = ".i.mips" ascii
  condition:
    $m or ($l and $e)
}

rule Linux_Dofloo_AES_Bot : botnet dofloo
{
  meta:
    description = "Dofloo/AESDDoS strings"
    family = "Dofloo"
  strings:
    $s1 = "VERSONEX:" ascii
    $s2 = "Hacker" ascii fullword
    $s3 = "/etc/rc.d/rc.local" ascii
    $s4 = "sed -i -e '/exit/d'" ascii
  condition:
    $s1 and 2 of ($s2, $s3, $s4)
}
