# shellcheck shell=sh
# Test cases for guest/rootfs/functions, run by tests/rootfs/run under each
# shell that runs the guest's init scripts (dash, busybox sh).  Usage:
#   SHELL tests/rootfs/cases.sh FUNCTIONS
# Prints a line for each failure and "N passed, N failed" at the end.

# shellcheck source-path=SCRIPTDIR source=../../guest/rootfs/functions
. "$1"

passed=0 failed=0
ok() {
    passed=$((passed + 1))
}
bad() {
    failed=$((failed + 1))
    echo "FAIL: $*"
}

# expect DESCRIPTION WANT GOT
expect() {
    if [ "$2" = "$3" ]; then ok; else bad "$1: want '$2', got '$3'"; fi
}
# expect_status DESCRIPTION WANT COMMAND...
expect_status() {
    _d=$1 _w=$2
    shift 2
    "$@" >/dev/null 2>&1
    expect "$_d (status)" "$_w" "$?"
}

# ---------------------------------------------------------------- command line

vireo_set_cmdline 'console=ttyS0 root=/dev/vda rw quiet -- echo root=/dev/vdb ro a.b=c'
expect 'root= before --' /dev/vda "$(vireo_arg root)"
expect 'root mode ignores words after --' rw "$(vireo_root_mode)"
expect_status 'ro after -- is not ours' 1 vireo_has ro
expect_status 'quiet is a word' 0 vireo_has quiet
expect_status 'no partial word match' 1 vireo_has quie
expect_status 'missing argument' 1 vireo_arg rootfstype
expect 'no module params from after --' '' "$(vireo_module_params a)"

vireo_set_cmdline 'root=/dev/vda root=/dev/vdb console=ttyS0'
expect 'last root= wins' /dev/vdb "$(vireo_arg root)"
expect 'rw by default' rw "$(vireo_root_mode)"

vireo_set_cmdline 'ro'
expect 'ro alone' ro "$(vireo_root_mode)"
vireo_set_cmdline 'ro rw'
expect 'ro then rw' rw "$(vireo_root_mode)"
vireo_set_cmdline 'rw  ro'
expect 'rw then ro' ro "$(vireo_root_mode)"

vireo_set_cmdline 'ip= vireo.end=reboot rootflags=data=journal,noatime'
expect_status 'empty value counts as given' 0 vireo_arg ip
expect 'empty value' '' "$(vireo_arg ip)"
expect 'dotted name' reboot "$(vireo_arg vireo.end)"
expect 'value with =' data=journal,noatime "$(vireo_arg rootflags)"

vireo_set_cmdline '-- root=/dev/vda'
expect_status 'command line that starts with --' 1 vireo_arg root
vireo_set_cmdline 'a--b root=/dev/vdc x-- --y'
expect 'a--b is no separator' /dev/vdc "$(vireo_arg root)"
vireo_set_cmdline 'root=/dev/vda --'
expect 'trailing --' /dev/vda "$(vireo_arg root)"
vireo_set_cmdline "$(printf 'console=ttyS0\troot=/dev/vde\n')"
expect 'tabs and a newline split words' /dev/vde "$(vireo_arg root)"

tmp=$(mktemp -d)
: >"$tmp/aaa"
: >"$tmp/bbb"
here=$PWD
cd "$tmp" || exit 1
vireo_set_cmdline 'glob=* star=a* init=/sbin/vireo-init'
expect 'no globbing of values' '*' "$(vireo_arg glob)"
expect 'no globbing of patterns' 'a*' "$(vireo_arg star)"
set +f
vireo_arg glob >/dev/null
case $- in
*f*) bad 'globbing stays off after vireo_arg' ;;
*) ok ;;
esac
set -f
vireo_arg glob >/dev/null
case $- in
*f*) ok ;;
*) bad 'set -f is lost after vireo_arg' ;;
esac
set +f
cd "$here" || exit 1
rm -rf "$tmp"

vireo_set_cmdline 'virtio-blk.queue_depth=64 virtio_blk.num_request_queues=2 virtio_pci.force_legacy=1 x=virtio_blk.y=1 virtio_blkx.z=1'
expect 'module params, - and _ alike' 'queue_depth=64
num_request_queues=2' "$(vireo_module_params virtio_blk)"
expect 'module params by dashed name' force_legacy=1 "$(vireo_module_params virtio-pci)"
expect 'no params' '' "$(vireo_module_params ext4)"

vireo_read_cmdline /nonexistent/cmdline
expect_status 'unreadable cmdline file: no arguments' 1 vireo_arg root
f=$(mktemp)
printf 'console=ttyS0 root=/dev/vdf ip=10.0.0.2 -- uname -r\n' >"$f"
vireo_read_cmdline "$f"
expect 'read from a file' /dev/vdf "$(vireo_arg root)"
expect 'ip= from a file' 10.0.0.2 "$(vireo_arg ip)"
rm -f "$f"

# ---------------------------------------------------------------- addresses

for a in 10.0.0.1 0.0.0.0 255.255.255.255 192.168.001.010; do
    expect_status "$a is an address" 0 vireo_is_ipv4 "$a"
done
for a in '' 256.1.1.1 1.2.3 1.2.3.4.5 a.b.c.d 1..2.3 .1.2.3 1.2.3.4. 1111.1.1.1 '1.2.3.4 ' -1.2.3.4; do
    expect_status "'$a' is no address" 1 vireo_is_ipv4 "$a"
done

expect 'mask /24' 24 "$(vireo_prefix_len 255.255.255.0)"
expect 'mask /16' 16 "$(vireo_prefix_len 255.255.0.0)"
expect 'mask /23' 23 "$(vireo_prefix_len 255.255.254.0)"
expect 'mask /25' 25 "$(vireo_prefix_len 255.255.255.128)"
expect 'mask /32' 32 "$(vireo_prefix_len 255.255.255.255)"
expect 'mask /0' 0 "$(vireo_prefix_len 0.0.0.0)"
expect 'prefix 24' 24 "$(vireo_prefix_len 24)"
expect 'prefix 08' 8 "$(vireo_prefix_len 08)"
expect 'prefix 0' 0 "$(vireo_prefix_len 0)"
for m in 33 255.0.255.0 255.255.255.1 255.255.256.0 '' 1.2.3 024; do
    expect_status "'$m' is no netmask" 1 vireo_prefix_len "$m"
done

# ---------------------------------------------------------------- ip=

# check_ip SPEC WANT: WANT is "mode addr/prefix gw host dev dns" (- for empty).
check_ip() {
    if vireo_parse_ip "$1"; then
        got="$ip_mode ${ip_addr:--}/${ip_prefix:--} ${ip_gw:--} ${ip_host:--} ${ip_dev:--} ${ip_dns:--}"
    else
        got="error: $ip_error"
    fi
    expect "ip=$1" "$2" "$got"
}
check_ip 10.0.2.15::10.0.2.2:255.255.255.0::eth0:off 'static 10.0.2.15/24 10.0.2.2 - eth0 -'
check_ip 10.0.2.15 'static 10.0.2.15/8 - - eth0 -'
check_ip 172.16.0.2 'static 172.16.0.2/16 - - eth0 -'
check_ip 192.168.1.5::::: 'static 192.168.1.5/24 - - eth0 -'
check_ip 10.1.2.3/20::10.1.0.1 'static 10.1.2.3/20 10.1.0.1 - eth0 -'
check_ip 10.0.0.2:10.0.0.9:10.0.0.1:24:guest1:eth1:none:1.1.1.1:8.8.8.8 \
    'static 10.0.0.2/24 10.0.0.1 guest1 eth1 1.1.1.1 8.8.8.8'
check_ip 10.0.0.2::0.0.0.0:255.255.255.0:::static:0.0.0.0:9.9.9.9 'static 10.0.0.2/24 - - eth0 9.9.9.9'
check_ip 10.0.0.2:::::enp0s1.10 'static 10.0.0.2/8 - - enp0s1.10 -'
check_ip dhcp 'dhcp -/- - - eth0 -'
check_ip on 'dhcp -/- - - eth0 -'
check_ip ::::::dhcp 'dhcp -/- - - eth0 -'
check_ip :::::eth1: 'dhcp -/- - - eth1 -'
check_ip off 'off -/- - - eth0 -'
check_ip none 'off -/- - - eth0 -'
check_ip '' 'off -/- - - eth0 -'
check_ip 10.0.0.300 "error: bad client address '10.0.0.300'"
check_ip 10.0.0.2::10.0.0.1:255.0.255.0 "error: bad netmask '255.0.255.0'"
check_ip 10.0.0.2/33 "error: bad netmask '33'"
check_ip 10.0.0.2/24::10.0.0.1:255.255.255.0 'error: both a prefix (10.0.0.2/24) and a netmask (255.255.255.0)'
check_ip 10.0.0.2::10.0.0 "error: bad gateway '10.0.0'"
check_ip 10.0.0.2::::::bogus "error: unknown autoconf method 'bogus'"
check_ip 10.0.0.2:::::e/th0 "error: bad device name 'e/th0'"
check_ip '10.0.0.2:::::eth0:off:8.8.8' "error: bad DNS server '8.8.8'"

# vireo_setup_ip with ip(8) replaced by a function that records its calls;
# lo exists on every host, so the wait for the device ends at once.
calls=
# shellcheck disable=SC2317 # called by vireo_setup_ip
ip() {
    calls="${calls:+$calls; }ip $*"
}
calls=
out=$(vireo_setup_ip 10.0.0.2::10.0.0.1:255.255.255.0::lo:off && echo "$calls")
expect 'setup_ip commands' 'ip link set dev lo up; ip addr add 10.0.0.2/24 dev lo; ip route add default via 10.0.0.1 dev lo' "$out"
out=$(vireo_setup_ip 10.0.0.2:::::lo && echo "$calls")
expect 'setup_ip without gateway' 'ip link set dev lo up; ip addr add 10.0.0.2/8 dev lo' "$out"
out=$(vireo_setup_ip off && echo "none: $calls")
expect 'setup_ip off' 'none: ' "$out"
out=$(vireo_setup_ip dhcp)
expect 'setup_ip dhcp' 'vireo-guest: ip=dhcp: only static addresses are supported; network not configured' "$out"
out=$(vireo_setup_ip 10.0.0.2:::::vireo-no-such-dev 0)
expect 'setup_ip missing device' 'vireo-guest: ip=10.0.0.2:::::vireo-no-such-dev: no network device vireo-no-such-dev' "$out"
out=$(vireo_setup_ip 10.0.0.256)
expect 'setup_ip bad spec' "vireo-guest: ip=10.0.0.256: bad client address '10.0.0.256'; network not configured" "$out"
# shellcheck disable=SC2317 # called by vireo_setup_ip
ip() {
    [ "$1" != addr ]
}
out=$(vireo_setup_ip 10.0.0.2:::::lo)
expect 'setup_ip when ip addr fails' 'vireo-guest: ip=10.0.0.2:::::lo: cannot set 10.0.0.2/8 on lo' "$out"
unset -f ip

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
