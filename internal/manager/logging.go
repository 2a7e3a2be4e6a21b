package manager

import "github.com/go-logr/logr"

// WithoutBodies returns l without client-go's request and response body lines (its
// verbosity-8 "Request Body" and "Response Body"). The operator's client speaks protobuf
// to the API server for the built-in kinds, and client-go logs a protobuf body as a hex
// dump with the raw bytes beside it: a lab's PKI Secret showed its bootstrap token there
// in the clear, and any Secret would. The operator never needs them: the audit log of the
// API server says what was sent, without the data of Secrets.
func WithoutBodies(l logr.Logger) logr.Logger {
	if l.GetSink() == nil {
		return l
	}
	return logr.New(bodyFilter{l.GetSink()})
}

// bodyFilter drops the body lines and passes everything else to the sink it wraps.
type bodyFilter struct{ logr.LogSink }

// isBody says whether msg is one of client-go's body lines (k8s.io/client-go/rest,
// request.go: logged at V(8) through the request context's logger).
func isBody(msg string) bool { return msg == "Request Body" || msg == "Response Body" }

func (f bodyFilter) Info(level int, msg string, keysAndValues ...any) {
	if isBody(msg) {
		return
	}
	f.LogSink.Info(level, msg, keysAndValues...)
}

func (f bodyFilter) WithValues(keysAndValues ...any) logr.LogSink {
	return bodyFilter{f.LogSink.WithValues(keysAndValues...)}
}

func (f bodyFilter) WithName(name string) logr.LogSink { return bodyFilter{f.LogSink.WithName(name)} }

// WithCallDepth keeps the caller the wrapped sink reports right.
func (f bodyFilter) WithCallDepth(depth int) logr.LogSink {
	if s, ok := f.LogSink.(logr.CallDepthLogSink); ok {
		return bodyFilter{s.WithCallDepth(depth)}
	}
	return f
}
