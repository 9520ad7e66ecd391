package ingest

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/dicomesh/dicomesh/node/archive"
)

// Parse guards and parses one Part 10 instance and returns what the archive
// records of it. It never allocates more than a small multiple of len(data)
// (see the package documentation) and never panics. Errors are
// *RejectError wrapping ErrNotDICOM, ErrNoFileMeta, ErrMalformed, ErrTooLarge,
// ErrUnsupported, ErrInvalidUID or ErrDirectory. An accepted instance has
// valid SOP Class, SOP Instance, Series, Study and Transfer Syntax UIDs.
func Parse(data []byte) (archive.InstanceMeta, error) {
	ds, l, err := decode(data)
	if err != nil {
		return archive.InstanceMeta{}, err
	}
	get := func(t tag.Tag) string { return value(ds, t) }
	if l.class == mediaDirectory || get(tag.MediaStorageSOPClassUID) == mediaDirectory {
		return archive.InstanceMeta{}, reject(ErrDirectory, "media storage SOP class %s", mediaDirectory)
	}
	m := archive.InstanceMeta{
		SOPClassUID:       get(tag.SOPClassUID),
		SOPInstanceUID:    get(tag.SOPInstanceUID),
		SeriesInstanceUID: get(tag.SeriesInstanceUID),
		StudyInstanceUID:  get(tag.StudyInstanceUID),
		TransferSyntaxUID: l.ts,
		PatientID:         get(tag.PatientID),
		IssuerOfPatientID: get(tag.IssuerOfPatientID),
		PatientName:       get(tag.PatientName),
		PatientBirthDate:  get(tag.PatientBirthDate),
		PatientSex:        get(tag.PatientSex),
		StudyDate:         get(tag.StudyDate),
		StudyTime:         get(tag.StudyTime),
		StudyDescription:  get(tag.StudyDescription),
		AccessionNumber:   get(tag.AccessionNumber),
		StudyID:           get(tag.StudyID),
		Referrer:          get(tag.ReferringPhysicianName),
		Modality:          get(tag.Modality),
		BodyPartExamined:  get(tag.BodyPartExamined),
		SeriesDescription: get(tag.SeriesDescription),
	}
	m.SeriesNumber, _ = strconv.Atoi(get(tag.SeriesNumber))
	m.InstanceNumber, _ = strconv.Atoi(get(tag.InstanceNumber))
	// The file meta repeats the SOP class and instance; use it when the
	// dataset lacks them.
	if m.SOPClassUID == "" {
		m.SOPClassUID = l.class
	}
	if m.SOPInstanceUID == "" {
		m.SOPInstanceUID = l.sop
	}
	for _, u := range []struct{ name, v string }{
		{"SOP Class UID", m.SOPClassUID},
		{"SOP Instance UID", m.SOPInstanceUID},
		{"Series Instance UID", m.SeriesInstanceUID},
		{"Study Instance UID", m.StudyInstanceUID},
	} {
		if err := validUID(u.v); err != nil {
			return archive.InstanceMeta{}, reject(ErrInvalidUID, "%s: %v", u.name, err)
		}
	}
	return m, nil
}

// decode guards data and parses the part of it the guard hands on.
func decode(data []byte) (dicom.Dataset, layout, error) {
	l, err := guard(data)
	if err != nil {
		return dicom.Dataset{}, l, err
	}
	ds, err := parseDataset(l.parse)
	return ds, l, err
}

// parseDataset runs the DICOM parser on guarded bytes. The guard leaves it
// nothing to panic on that we know of; a panic is still turned into an error.
func parseDataset(data []byte) (ds dicom.Dataset, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = reject(ErrMalformed, "parser failed: %v", r)
		}
	}()
	ds, err = dicom.Parse(bytes.NewReader(data), int64(len(data)), nil,
		dicom.SkipPixelData(), dicom.AllowMissingMetaElementGroupLength(), dicom.AllowUnknownSpecificCharacterSet())
	if err != nil {
		return ds, reject(ErrMalformed, "parser: %v", err)
	}
	return ds, nil
}

// value returns an element's values as text joined by backslashes, trimmed,
// or "" when the element is absent or not text or numbers.
func value(ds dicom.Dataset, t tag.Tag) string {
	el, err := ds.FindElementByTag(t)
	if err != nil || el.Value == nil {
		return ""
	}
	switch v := el.Value.GetValue().(type) {
	case []string:
		return strings.Trim(strings.Join(v, `\`), " \x00")
	case []int:
		if len(v) == 1 {
			return strconv.Itoa(v[0])
		}
	}
	return ""
}
