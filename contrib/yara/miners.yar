// Coin miners dropped on Linux hosts: XMRig and its forks, their configs and the
// scripts that install them (TeamTNT, Kinsing, WatchDog, 8220 Gang).

rule Linux_XMRig_Binary : miner xmrig
{
  meta:
    description = "XMRig's own banner and option strings"
    family = "XMRig"
  strings:
    $b1 = "XMRig/" ascii
    $b2 = "xmrig.com" ascii
    $o1 = "--donate-level" ascii
    $o2 = "randomx" ascii nocase
    $o3 = "cryptonight" ascii nocase
    $o4 = "--cpu-max-threads-hint" ascii
  condition:
    any of ($b*) and 2 of ($o*)
}

rule Linux_Miner_Stratum_Login : miner
{
  meta:
    description = "A stratum login request in memory (JSON-RPC to a mining pool)"
  strings:
    $m1 = "\"method\":\"login\"" ascii
    $m2 = "\"method\": \"login\"" ascii
    $a = "\"agent\":" ascii
    $s = "stratum+tcp://" ascii
    $s2 = "stratum+ssl://" ascii
  condition:
    any of ($m*) and $a and any of ($s, $s2)
}

rule Linux_Miner_Pool_Domains : miner
{
  meta:
    description = "Well-known Monero pool host names next to a wallet-like string"
  strings:
    $p1 = "pool.minexmr.com" ascii nocase
    $p2 = "xmr.pool.minergate.com" ascii nocase
    $p3 = "pool.supportxmr.com" ascii nocase
    $p4 = "xmr-eu1.nanopool.org" ascii nocase
    $p5 = "gulf.moneroocean.stream" ascii nocase
    $p6 = "monerohash.com" ascii nocase
    $w = /4[0-9AB][1-9A-HJ-NP-Za-km-z]{93}/ ascii
  condition:
    any of ($p*) and $w
}

rule Linux_XMRig_Config_JSON : miner xmrig
{
  meta:
    description = "An XMRig config.json loaded in memory"
    family = "XMRig"
  strings:
    $k1 = "\"donate-level\"" ascii
    $k2 = "\"randomx\"" ascii
    $k3 = "\"huge-pages\"" ascii
    $k4 = "\"pools\"" ascii
    $k5 = "\"nicehash\"" ascii
  condition:
    4 of them
}

rule Linux_TeamTNT_Scripts : miner teamtnt
{
  meta:
    description = "TeamTNT's installer strings"
    family = "TeamTNT"
  strings:
    $t1 = "TeamTNT" ascii nocase
    $t2 = "teamtnt.red" ascii nocase
    $s1 = "AWS_SECRET_ACCESS_KEY" ascii
    $s2 = "docker.sock" ascii
    $s3 = "/root/.aws/credentials" ascii
    $s4 = "masscan" ascii
  condition:
    any of ($t*) and 2 of ($s*)
}

rule Linux_Kinsing_Kdevtmpfsi : miner kinsing
{
  meta:
    description = "Kinsing and its kdevtmpfsi miner"
    family = "Kinsing"
  strings:
    $n1 = "kdevtmpfsi" ascii
    $n2 = "kinsing" ascii
    $s1 = "main.masscan" ascii
    $s2 = "main.getMinerPid" ascii
    $s3 = "main.runTaskWithHttp" ascii
  condition:
    any of ($n*) and any of ($s*)
}

rule Linux_Miner_Killer_Script : miner
{
  meta:
    description = "A script that kills competing miners before starting its own"
  strings:
    $k1 = "pkill -f kworkerds" ascii
    $k2 = "pkill -f kdevtmpfsi" ascii
    $k3 = "killall -9 xmrig" ascii
    $k4 = "pkill -f sysupdate" ascii
    $k5 = "ps aux | grep -v grep | grep" ascii
    $c = "crontab -r" ascii
  condition:
    2 of ($k*) and $c
}

rule Linux_WatchDog_Miner : miner watchdog
{
  meta:
    description = "WatchDog mining botnet (Go) function names"
    family = "WatchDog"
  strings:
    $f1 = "main.WatchdogProcess" ascii
    $f2 = "main.NetworkScanner" ascii
    $f3 = "main.CheckXmrigRun" ascii
  condition:
    2 of them
}

rule Linux_8220_Gang_Loader : miner
{
  meta:
    description = "8220 Gang loader script markers"
    family = "8220"
  strings:
    $s1 = "sshd.service" ascii
    $s2 = "chattr -i /etc/ld.so.preload" ascii
    $s3 = "/tmp/.ICE-unix/" ascii
    $s4 = "curl -fsSL" ascii
    $s5 = "base64 -d | bash" ascii
  condition:
    $s2 and 2 of ($s1, $s3, $s4, $s5)
}

rule Linux_Miner_HugePages_Tuning : miner
{
  meta:
    description = "A dropper tuning huge pages and MSRs for RandomX"
  strings:
    $h = "vm.nr_hugepages" ascii
    $m1 = "wrmsr -a 0x1a4" ascii
    $m2 = "modprobe msr" ascii
    $x = "randomx" ascii nocase
  condition:
    $h and any of ($m*) and $x
}
