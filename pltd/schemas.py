"""The record schemas that flow between stages, written down once.

The PLTD columns of ARCHITECTURE.md are the public face of these; the ingest schema is the first
record every image gets.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

# 2 added the PLTD's `visible` column, ingest's face_index / face_score and landmarks' pose_agreement
SCHEMA_VERSION = "2"

LANDMARK_COORDS = 136  # 68 points × (x, y), iBUG order
LANDMARKS_POSE = LANDMARK_COORDS + 3  # a landmark+pose network's output: the 136 values, then yaw, pitch, roll

BBOX = pa.list_(pa.float32(), 4)
POINTS68 = pa.list_(pa.float32(), LANDMARK_COORDS)
POSE = pa.list_(pa.float32(), 3)
# Optional vectors in intermediate tables are variable-size lists: pyarrow (<= 25) cannot read back
# a fixed_size_list column with nulls from Parquet ("Expected all lists to be of size=4 …").
# The PLTD itself uses the fixed-size types above, where every row has a value.
OPT_VECTOR = pa.list_(pa.float32())

# One row per readable image. Image bytes stay where they are (path or byte range of a .rec):
# copying 8 M images at ingest would double the storage for nothing; `assemble` writes the crops.
INGEST = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_label", pa.string()),  # identity (folder / rec label); null when unknown
        pa.field("source_path", pa.string(), nullable=False),  # file URL, or the .rec URL
        pa.field("record_index", pa.int64()),  # .idx key for RecordIO sources, else null
        pa.field("offset", pa.int64()),  # byte offset of the image bytes inside source_path
        pa.field("length", pa.int64()),  # number of image bytes at offset (whole file: its size)
        pa.field("format", pa.string()),  # decoded format: JPEG, PNG, ...
        pa.field("mode", pa.string()),  # the file's own colour mode before conversion to RGB
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("bbox", OPT_VECTOR),  # 4 values: face box x0,y0,x1,y1 in source-image pixels; null when unknown
        pa.field("landmarks_gt", OPT_VECTOR),  # 136 values: ground truth 68 points (300W-LP, AFLW2000), else null
        # the jaw style of landmarks_gt ("2d": visible outline, 300W-LP pt2d; "3d": projected 3D jaw,
        # AFLW2000-3D pt3d_68), and the ground truth in the other style where the dataset has it
        # (300W-LP's landmarks/*_pts.mat pts_3d); the landmarks stage keeps the PLTD's `jaw_style`
        pa.field("landmarks_gt_style", pa.string()),
        pa.field("landmarks_gt_other", OPT_VECTOR),
        pa.field("pose_gt", OPT_VECTOR),  # 3 values: ground truth yaw, pitch, roll in degrees, else null
        pa.field("base_id", pa.string()),  # 300W-LP: the base photo a render came from
        # face-detection front-end (a source's `detect:`, stages/detect_faces.py): the row is face
        # `face_index` of its photo (left to right), `bbox` the detector's box, `face_score` its score;
        # null for sources without detection (one row per photo)
        pa.field("face_index", pa.int16()),
        pa.field("face_score", pa.float32()),
    ]
)

# The two conventions of the 68 points' jaw (0–16); a PLTD has one (`landmarks.jaw_style`, in its metadata)
JAW_STYLES = {
    "3d": "3D-style: the projection of the 3D jaw (3DDFA_V2, AFLW2000-3D pt3d_68, 300W-LP pts_3d)",
    "2d": "2D-style: on the visible face outline (dlib, MediaPipe, 300W-LP pt2d, 300-W annotations)",
}

# Algorithm 1's output, one row per labelled image, partition for partition with ingest. For sources
# with ground truth (300W-LP, AFLW2000) the label is the ground truth and the pseudo-label, computed
# all the same, goes to the audit columns with the single-pass outputs of each source on view 0.
LANDMARKS = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("label_kind", pa.string(), nullable=False),  # pseudo | ground_truth
        pa.field("landmarks", OPT_VECTOR),  # 136: 68 points in source-image pixels
        pa.field("pose", OPT_VECTOR),  # 3: yaw, pitch, roll in degrees
        pa.field("n_samples", pa.int8()),  # samples kept by selective fitting
        pa.field("n_teacher", pa.int8()),  # … of which from the teacher
        pa.field("n_second", pa.int8()),  # … of which from the second source (MediaPipe)
        pa.field("n_valid", pa.int8()),  # valid samples before fitting (|D|)
        pa.field("fit_error", pa.float32()),  # mean distance of kept samples to their mean / face size
        pa.field("eye_closed", OPT_VECTOR),  # 2: σ of eye 36–41 and eye 42–47, mean over views
        pa.field("face_box", OPT_VECTOR),  # 4: the box the views were cut around (source pixels)
        pa.field("pseudo_status", pa.string()),  # accepted, or the rejection reason (audit rows)
        pa.field("pseudo_landmarks", OPT_VECTOR),
        pa.field("pseudo_pose", OPT_VECTOR),
        pa.field("single_teacher_landmarks", OPT_VECTOR),
        pa.field("single_teacher_pose", OPT_VECTOR),
        pa.field("single_second_landmarks", OPT_VECTOR),
        pa.field("single_second_pose", OPT_VECTOR),
        # PnP cross-check (landmarks.pose_check, stages/landmarks/pnp.py): degrees between OpenCV's PnP
        # rotation of the row's landmarks on the mean face and the rotation of its pose; null when off
        pa.field("pose_agreement", pa.float32()),
        pa.field("pseudo_pose_agreement", pa.float32()),  # the same for the pseudo-label (audit rows)
    ]
)

# Two face-recognition networks' L2-normalised embeddings per image (Algorithm 2, step 1).
# source_label is the identity the source gives (300W-LP: the base photo).
EMBEDDINGS = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_label", pa.string()),
        pa.field("emb_0", pa.list_(pa.float32())),
        pa.field("emb_1", pa.list_(pa.float32())),
    ]
)

# The PLTD: what downstream trainers read (ARCHITECTURE.md, "The PLTD contract").
PLTD = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("source", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("source_label", pa.string()),
        pa.field("face_id", pa.int64(), nullable=False),
        pa.field("image", pa.binary(), nullable=False),  # JPEG of the face-centred region
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("bbox", BBOX, nullable=False),  # the 68 points' box, region pixels
        pa.field("landmarks", POINTS68, nullable=False),  # region pixels, iBUG 68 order
        pa.field("pose", POSE, nullable=False),  # yaw, pitch, roll in degrees (README convention)
        pa.field("label_kind", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("n_samples", pa.int8(), nullable=False),  # 0 for ground truth
        pa.field("fit_error", pa.float32(), nullable=False),  # NaN for ground truth
        pa.field("eye_closed", pa.list_(pa.float32(), 2), nullable=False),  # NaN where not measured
        pa.field("source_path", pa.string(), nullable=False),
        # 68 flags, iBUG order: self-occlusion of the label's pose on the mean 3D face (back-face test,
        # stages/landmarks/visibility.py), True = the point's surface faces the camera. Nullable, so a
        # variable-size list (see OPT_VECTOR: a null in a fixed-size list makes the whole file unreadable
        # to pyarrow <= 25); assemble writes it on every row (a NaN pose gives all False).
        pa.field("visible", pa.list_(pa.bool_())),
    ]
)

# One row per image dropped by any stage; `detail` says what exactly was wrong.
REJECTED = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
        pa.field("source_path", pa.string()),
        pa.field("record_index", pa.int64()),
        pa.field("face_index", pa.int16()),  # the rejected face of a photo (detection sources), else null
    ]
)


def image_id(source: str, location: str) -> str:
    """Stable id of an image: a hash of its source name and its location inside the source."""
    return hashlib.blake2b(f"{source}\x00{location}".encode(), digest_size=12).hexdigest()


def empty(schema: pa.Schema) -> pa.Table:
    """An empty table of `schema`."""
    return schema.empty_table()
