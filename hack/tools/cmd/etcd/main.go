// Command etcd is the etcd server, built from the pinned module so the test
// control plane does not depend on a distribution's older etcd.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
