package testnode

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// listensOn reports whether process pid holds a listening TCP socket on
// addr (host:port), from /proc (Linux only). WaitHealthy asks it because
// a free port found a moment ago can be taken by another test's node
// before ours binds it: a /healthz answer alone may come from that node.
func listensOn(pid int, addr string) (bool, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return false, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return false, fmt.Errorf("port of %s: %w", addr, err)
	}
	ip := net.ParseIP(host)
	inodes := map[string]bool{}
	for _, table := range []string{"tcp", "tcp6"} {
		if err := listeningInodes(filepath.Join("/proc", strconv.Itoa(pid), "net", table), ip, uint16(port), inodes); err != nil {
			return false, err
		}
	}
	if len(inodes) == 0 {
		return false, nil
	}
	fdDir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return false, err
	}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
		if err != nil {
			continue // closed since the listing
		}
		if ino, ok := strings.CutPrefix(link, "socket:["); ok && inodes[strings.TrimSuffix(ino, "]")] {
			return true, nil
		}
	}
	return false, nil
}

// listeningInodes adds to inodes the socket inodes of the LISTEN rows of
// a /proc/net/tcp{,6} table bound to port on ip (or on every address).
func listeningInodes(table string, ip net.IP, port uint16, inodes map[string]bool) error {
	f, err := os.Open(table)
	if os.IsNotExist(err) {
		return nil // no IPv6 here
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		fs := strings.Fields(sc.Text())
		if len(fs) < 10 || fs[3] != "0A" { // 0A is TCP_LISTEN
			continue
		}
		hexIP, hexPort, ok := strings.Cut(fs[1], ":")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil || uint16(p) != port {
			continue
		}
		if bound := procIP(hexIP); bound != nil && (bound.IsUnspecified() || ip == nil || bound.Equal(ip)) {
			inodes[fs[9]] = true
		}
	}
	return sc.Err()
}

// procIP decodes an address of /proc/net/tcp: 32-bit words in host
// (little-endian) order.
func procIP(h string) net.IP {
	if len(h) != 8 && len(h) != 32 {
		return nil
	}
	ip := make(net.IP, len(h)/2)
	for w := 0; w < len(h)/8; w++ {
		v, err := strconv.ParseUint(h[w*8:w*8+8], 16, 32)
		if err != nil {
			return nil
		}
		for i := range 4 {
			ip[w*4+i] = byte(v >> (8 * i))
		}
	}
	return ip
}
