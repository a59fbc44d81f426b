package config

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

var durationType = reflect.TypeFor[time.Duration]()

// RequireDurationUnits rejects durations written as bare numbers in raw, the
// configuration as written (confmap.Conf.ToStringMap): the collector's
// decoder reads `idle_window: 60` as 60 nanoseconds, which silently closes
// every trace at once. It walks the mapstructure-tagged fields of cfg's type,
// so every duration field, nested ones included, is covered. A bare 0 is
// accepted: it means the same in every unit.
func RequireDurationUnits(raw map[string]any, cfg any) error {
	return errors.Join(checkDurations(raw, reflect.TypeOf(cfg), "")...)
}

func checkDurations(raw map[string]any, t reflect.Type, prefix string) []error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var errs []error
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" && strings.Contains(opts, "squash") {
			errs = append(errs, checkDurations(raw, f.Type, prefix)...)
			continue
		}
		v, ok := raw[name]
		if !ok || name == "" {
			continue
		}
		errs = append(errs, checkDurationValue(v, f.Type, prefix+name)...)
	}
	return errs
}

func checkDurationValue(v any, t reflect.Type, path string) []error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == durationType {
		if n, ok := bareNumber(v); ok {
			return []error{fmt.Errorf("%s: %s has no unit; write %ss", path, n, n)}
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if m, ok := v.(map[string]any); ok {
			return checkDurations(m, t, path+".")
		}
	case reflect.Slice, reflect.Array:
		var errs []error
		if items, ok := v.([]any); ok {
			for i, item := range items {
				errs = append(errs, checkDurationValue(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
			}
		}
		return errs
	case reflect.Map:
		var errs []error
		if m, ok := v.(map[string]any); ok {
			for k, item := range m {
				errs = append(errs, checkDurationValue(item, t.Elem(), fmt.Sprintf("%s[%q]", path, k))...)
			}
		}
		return errs
	}
	return nil
}

// bareNumber formats v when it is a non-zero number (YAML int or float).
func bareNumber(v any) (string, bool) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(rv.Int(), 10), rv.Int() != 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(rv.Uint(), 10), rv.Uint() != 0
	case reflect.Float32, reflect.Float64:
		return strconv.FormatFloat(rv.Float(), 'g', -1, 64), rv.Float() != 0
	}
	return "", false
}
