module github.com/meltemi-mesh/meltemi

go 1.26
