package ingest

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/dicomesh/dicomesh/node/archive"
)

// Parse guards and parses one Part 10 instance and returns what the archive
// records of it. Errors wrap ErrNotDICOM, ErrMalformed, ErrTooLarge,
// ErrUnsupported or ErrInvalidUID.
func Parse(data []byte) (archive.InstanceMeta, error) {
	var m archive.InstanceMeta
	ts, err := Guard(data)
	if err != nil {
		return m, err
	}
	ds, err := parseDataset(data)
	if err != nil {
		return m, err
	}
	get := func(t tag.Tag) string { return value(ds, t) }
	if get(tag.MediaStorageSOPClassUID) == mediaDirectory {
		return m, ErrDirectory
	}
	m = archive.InstanceMeta{
		SOPClassUID:       get(tag.SOPClassUID),
		SOPInstanceUID:    get(tag.SOPInstanceUID),
		SeriesInstanceUID: get(tag.SeriesInstanceUID),
		StudyInstanceUID:  get(tag.StudyInstanceUID),
		TransferSyntaxUID: ts,
		PatientID:         get(tag.PatientID),
		IssuerOfPatientID: get(tag.IssuerOfPatientID),
		PatientName:       get(tag.PatientName),
		PatientBirthDate:  get(tag.PatientBirthDate),
		PatientSex:        get(tag.PatientSex),
		StudyDate:         get(tag.StudyDate),
		StudyTime:         get(tag.StudyTime),
		StudyDescription:  get(tag.StudyDescription),
		AccessionNumber:   get(tag.AccessionNumber),
		Modality:          get(tag.Modality),
		BodyPartExamined:  get(tag.BodyPartExamined),
		SeriesDescription: get(tag.SeriesDescription),
	}
	m.SeriesNumber, _ = strconv.Atoi(get(tag.SeriesNumber))
	m.InstanceNumber, _ = strconv.Atoi(get(tag.InstanceNumber))
	for _, u := range []struct{ name, v string }{
		{"SOP Class UID", m.SOPClassUID},
		{"SOP Instance UID", m.SOPInstanceUID},
		{"Series Instance UID", m.SeriesInstanceUID},
		{"Study Instance UID", m.StudyInstanceUID},
	} {
		if err := validUID(u.v); err != nil {
			return archive.InstanceMeta{}, fmt.Errorf("%s: %w", u.name, err)
		}
	}
	return m, nil
}

// parseDataset runs the DICOM parser on guarded bytes, turning its panics on
// hostile input into errors.
func parseDataset(data []byte) (ds dicom.Dataset, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: parser failed: %v", ErrMalformed, r)
		}
	}()
	ds, err = dicom.Parse(bytes.NewReader(data), int64(len(data)), nil,
		dicom.SkipPixelData(), dicom.AllowMissingMetaElementGroupLength(), dicom.AllowUnknownSpecificCharacterSet())
	if err != nil {
		return ds, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return ds, nil
}

// value returns the first value of an element as trimmed text, or "".
func value(ds dicom.Dataset, t tag.Tag) string {
	el, err := ds.FindElementByTag(t)
	if err != nil || el.Value == nil {
		return ""
	}
	switch v := el.Value.GetValue().(type) {
	case []string:
		if len(v) > 0 {
			return strings.TrimRight(strings.TrimSpace(v[0]), "\x00")
		}
	case []int:
		if len(v) > 0 {
			return strconv.Itoa(v[0])
		}
	}
	return ""
}
