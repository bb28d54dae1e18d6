package artifactd

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// WithScope answers a client for one run, job, graph or node (the Node
// SDK's withScope): every save — OpenWriter, UploadFile, SaveFile,
// UploadReader, SaveJSON, SaveText, SaveDir (the directory's files too) —
// gets the scope's provenance in each field its spec leaves empty; List,
// Search, Best, Top and Watch see only artifacts with the scope's
// provenance (a field the call's filter sets wins); RecordUsage's run
// defaults to the scope's. WithScope on a scoped client narrows further:
// the given fields win over the ones it had. The scoped client shares this
// client's connection, retries and settings (closing either closes both).
//
//	step := client.WithScope(&artifactd.Provenance{ParentRunId: job, RunId: job + "-lr0.1"})
func (c *Client) WithScope(scope *Provenance) *Client {
	scoped := *c
	scoped.scope = mergeProvenance(scope, c.scope)
	return &scoped
}

// Scope is the provenance this client fills in and narrows to (a copy; nil
// for a client that is not scoped).
func (c *Client) Scope() *Provenance {
	if c.scope == nil {
		return nil
	}
	return proto.CloneOf(c.scope)
}

// mergeProvenance is given's fields, each one it leaves empty taken from
// base. Every string field of Provenance, by its descriptor, so a field
// added to the proto is scoped too (as the Node SDK does).
func mergeProvenance(given, base *Provenance) *Provenance {
	merged := &Provenance{}
	target := merged.ProtoReflect()
	fields := target.Descriptor().Fields()
	for i := range fields.Len() {
		field := fields.Get(i)
		if field.Kind() != protoreflect.StringKind || field.IsList() {
			continue
		}
		for _, source := range []*Provenance{given, base} {
			if source == nil {
				continue
			}
			if value := source.ProtoReflect().Get(field).String(); value != "" {
				target.Set(field, protoreflect.ValueOfString(value))
				break
			}
		}
	}
	return merged
}

// scopedSpec is spec with the scope's provenance in each field it leaves
// empty; spec itself when the client is not scoped (the caller's spec is
// never changed).
func (c *Client) scopedSpec(spec *Spec) *Spec {
	if c.scope == nil || spec == nil {
		return spec
	}
	scoped := proto.CloneOf(spec)
	scoped.Provenance = mergeProvenance(spec.GetProvenance(), c.scope)
	return scoped
}

// scopedFilter is filter narrowed to the scope's provenance (the filter's
// own fields winning); filter itself when the client is not scoped.
func (c *Client) scopedFilter(filter *Filter) *Filter {
	if c.scope == nil {
		return filter
	}
	scoped := &Filter{}
	if filter != nil {
		scoped = proto.CloneOf(filter)
	}
	scoped.Provenance = mergeProvenance(filter.GetProvenance(), c.scope)
	return scoped
}
