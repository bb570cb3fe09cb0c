// Attack tools and credential theft found in compromised Linux hosts.

rule Linux_Tool_Mimipenguin : credentials
{
  meta:
    description = "mimipenguin: passwords from process memory"
  strings:
    $s1 = "mimipenguin" ascii nocase
    $s2 = "gnome-keyring-daemon" ascii
    $s3 = "/proc/%d/maps" ascii
    $s4 = "shadow hash" ascii nocase
  condition:
    $s1 and any of ($s2, $s3, $s4)
}

rule Linux_Tool_Shadow_Dump : credentials
{
  meta:
    description = "A copy of /etc/shadow entries with SHA-512 hashes"
  strings:
    $r = /root:\$6\$[A-Za-z0-9.\/]{1,16}\$[A-Za-z0-9.\/]{86}:/ ascii
  condition:
    $r
}

rule Linux_Tool_SSH_Key_Stealer : credentials
{
  meta:
    description = "Exfiltration of SSH keys and known hosts"
  strings:
    $k1 = "/.ssh/id_rsa" ascii
    $k2 = "/.ssh/id_ed25519" ascii
    $k3 = "/.ssh/known_hosts" ascii
    $x1 = "curl -F" ascii
    $x2 = "--upload-file" ascii
    $x3 = "tar czf - ~/.ssh" ascii
  condition:
    2 of ($k*) and any of ($x*)
}

rule Linux_Tool_Cloud_Metadata_Theft : credentials cloud
{
  meta:
    description = "Requests to the cloud metadata service for credentials"
  strings:
    $m1 = "169.254.169.254/latest/meta-data/iam/security-credentials" ascii
    $m2 = "metadata.google.internal/computeMetadata/v1/instance/service-accounts" ascii
    $m3 = "169.254.169.254/metadata/identity/oauth2/token" ascii
  condition:
    any of them
}

rule Linux_Tool_Masscan_Zmap : scanner
{
  meta:
    description = "masscan or zmap compiled in"
  strings:
    $m1 = "masscan --" ascii
    $m2 = "Masscan/1." ascii
    $z1 = "zmap: " ascii
    $z2 = "--probe-module" ascii
  condition:
    all of ($m*) or all of ($z*)
}

rule Linux_Tool_Chisel_Tunnel : tunnel
{
  meta:
    description = "chisel reverse tunnel (Go)"
  strings:
    $s1 = "github.com/jpillora/chisel" ascii
    $s2 = "chisel-v3" ascii
    $s3 = "R:socks" ascii
  condition:
    2 of them
}

rule Linux_Tool_Ligolo_Frp : tunnel
{
  meta:
    description = "ligolo-ng or frp reverse proxies"
  strings:
    $l = "github.com/nicocha30/ligolo-ng" ascii
    $f1 = "github.com/fatedier/frp" ascii
    $f2 = "frpc.ini" ascii
  condition:
    $l or all of ($f*)
}

rule Linux_Tool_Sliver_Implant : c2
{
  meta:
    description = "Sliver C2 implant (Go)"
  strings:
    $s1 = "github.com/bishopfox/sliver" ascii
    $s2 = "sliverpb" ascii
    $s3 = "implant/sliver" ascii
  condition:
    2 of them
}

rule Linux_Tool_Cobalt_Strike_Beacon_Config : c2
{
  meta:
    description = "Cobalt Strike beacon configuration block (XOR 0x69 and 0x2e)"
  strings:
    $c69 = { 69 68 69 69 69 6B 69 69 69 6A 69 }
    $c2e = { 2E 2F 2E 2E 2E 2C 2E 2E 2E 2D 2E }
  condition:
    any of them
}

rule Linux_Tool_Metasploit_Mettle : c2
{
  meta:
    description = "Metasploit's mettle (Linux Meterpreter)"
  strings:
    $s1 = "mettle" ascii fullword
    $s2 = "stdapi_sys_process_execute" ascii
    $s3 = "core_channel_open" ascii
  condition:
    $s2 and $s3 or ($s1 and any of ($s2, $s3))
}

rule Linux_Persistence_Cron_Download : persistence
{
  meta:
    description = "A crontab line that downloads and runs a script"
  strings:
    $c = /\*\/[0-9]{1,2} \* \* \* \* (root )?\(?(curl|wget) [^|]{8,120}\| ?(ba)?sh/ ascii
  condition:
    $c
}

rule Linux_Persistence_Systemd_Dropper : persistence
{
  meta:
    description = "A dropper writing a systemd unit that restarts a hidden binary"
  strings:
    $u = "[Service]" ascii
    $r = "Restart=always" ascii
    $e = /ExecStart=\/(tmp|dev\/shm|var\/tmp)\/\.[a-z0-9]{1,16}/ ascii
  condition:
    all of them
}
