module pvshift.local/hack/images/pause

go 1.22
