// Command kube-apiserver-etcd runs the real Kubernetes API server (k8s.io/kubernetes's own
// cmd/kube-apiserver) on top of an embedded etcd, in one process, for featurerollout's tests.
//
// Usage:
//
//	kube-apiserver-etcd --etcd-dir DIR --etcd-port N --sa-key FILE -- [kube-apiserver flags]
//
// It starts etcd on 127.0.0.1:N (data in DIR), creates the ServiceAccount signing key FILE
// (and FILE.pub) if it does not exist, then runs kube-apiserver with the flags after "--"
// plus --etcd-servers. SIGINT/SIGTERM stop the API server (through its own signal handling)
// and then etcd. It is a test binary: nothing here is meant for a production control plane.
package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kube-apiserver-etcd:", err)
		os.Exit(1)
	}
}

func run() error {
	etcdDir := flag.String("etcd-dir", "", "etcd data directory (required)")
	etcdPort := flag.Int("etcd-port", 0, "etcd client port on 127.0.0.1 (required)")
	saKey := flag.String("sa-key", "", "ServiceAccount signing key; created with FILE.pub if missing (required)")
	flag.Parse()
	if *etcdDir == "" || *etcdPort == 0 || *saKey == "" {
		return errors.New("--etcd-dir, --etcd-port and --sa-key are required")
	}
	if err := ensureServiceAccountKey(*saKey); err != nil {
		return err
	}
	etcd, clientURL, err := startEtcd(*etcdDir, *etcdPort)
	if err != nil {
		return err
	}
	defer etcd.Close()

	args := append([]string{
		"--etcd-servers=" + clientURL,
		"--service-account-key-file=" + *saKey + ".pub",
		"--service-account-signing-key-file=" + *saKey,
	}, flag.Args()...)
	cmd := app.NewAPIServerCommand()
	cmd.SetArgs(args)
	// kube-apiserver installs its own SIGINT/SIGTERM handler and returns once it has shut down.
	return cmd.Execute()
}

func startEtcd(dir string, port int) (*embed.Etcd, string, error) {
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.LogLevel = "error"
	// A throwaway test store: durability across a power cut does not matter, speed does.
	cfg.UnsafeNoFsync = true
	client, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", port))
	// The peer port is never used by a one-member cluster; a unix-free loopback port avoids clashes.
	peer, _ := url.Parse("http://127.0.0.1:0")
	cfg.ListenClientUrls = []url.URL{*client}
	cfg.AdvertiseClientUrls = []url.URL{*client}
	cfg.ListenPeerUrls = []url.URL{*peer}
	cfg.AdvertisePeerUrls = []url.URL{*peer}
	cfg.InitialCluster = cfg.Name + "=" + peer.String()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, "", errors.New("etcd did not become ready within 60s")
	}
	return e, client.String(), nil
}

func ensureServiceAccountKey(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	private := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	publicDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	public := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: publicDER})
	if err := os.WriteFile(path, private, 0o600); err != nil {
		return err
	}
	return os.WriteFile(path+".pub", public, 0o644)
}
