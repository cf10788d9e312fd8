module github.com/meltemi-mesh/meltemi/e2e

go 1.26
