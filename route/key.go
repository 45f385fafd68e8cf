package route

import "github.com/pgfeed/pgfeed/event"

// Key returns the message key of a row event: its key columns as a compact
// JSON object in the relation's column order, {"id":2}, with values mapped as
// in the event's JSON: the primary key or replica identity index, whatever
// the table's REPLICA IDENTITY, or every column of a table with neither
// (event.Column.Key). It returns nil when the event has no row or none of
// its key columns was sent.
//
// Each key column is taken from the new row, or from the old row when the new
// row lacks it: an update that leaves a TOASTed key column untouched does not
// send it in the new row, but sends it in the old one.
func Key(e *event.Event) []byte {
	if e.Rel == nil || !e.Op.IsRowChange() {
		return nil
	}
	var dst []byte
	for i := range e.Rel.Columns {
		col := &e.Rel.Columns[i]
		if !col.Key {
			continue
		}
		v, ok := keyValue(e.After, i)
		if !ok {
			v, ok = keyValue(e.Before, i)
		}
		if !ok {
			continue
		}
		if dst == nil {
			dst = append(make([]byte, 0, 32), '{')
		} else {
			dst = append(dst, ',')
		}
		dst = event.AppendJSONString(dst, col.Name)
		dst = append(dst, ':')
		dst = v.AppendJSON(dst, col.Type)
	}
	if dst == nil {
		return nil
	}
	return append(dst, '}')
}

// keyValue returns column i of row if the row holds a value for it.
func keyValue(row event.Row, i int) (event.Value, bool) {
	if i >= len(row) {
		return event.Value{}, false
	}
	v := row[i]
	return v, v.State == event.Text || v.State == event.Null
}
