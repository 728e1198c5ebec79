"""The comparison report, in parts: `collect` reads the cells' files into frames, `tables` reshapes them into the
tables people read (numbers kept), `verdicts` turns the comparison into sentences, `text` formats numbers once,
`document` fills `template.md` (the report's prose) and lists every file, `plots` draws them and writes their
data for DVC, `publish` writes the folder at once. The statistics are pipelines.comparison's."""
