module zookeeper-operator/e2e/tools/pause

go 1.24
