package proxy_test

func runSubprocessRole() bool { return false }
func quietDubboLogs()         {}
