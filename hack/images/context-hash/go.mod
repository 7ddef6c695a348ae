module pvshift.local/hack/images/context-hash

go 1.22

require github.com/moby/patternmatcher v0.6.1
