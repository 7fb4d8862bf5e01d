// A load-image input: choose a file of the input folder, or upload one into it.
import { useRef, useState } from "react";
import { fetchCatalog, uploadImage, viewUrl } from "../api/client";
import { useEditor } from "../store";
import { ChoiceField, type FieldProps } from "./fields";

export function ImageField(props: FieldProps) {
  const chooser = useRef<HTMLInputElement>(null);
  const [busy, setBusy] = useState(false);
  const setCatalog = useEditor((state) => state.setCatalog);
  const notify = useEditor((state) => state.notify);

  const upload = async (file: File) => {
    setBusy(true);
    try {
      const result = await uploadImage(file);
      // The input folder changed: fetch the node list again so the new file is a choice.
      setCatalog(await fetchCatalog());
      props.onChange(result.name);
    } catch (error) {
      notify("error", `Upload failed: ${error instanceof Error ? error.message : String(error)}`);
    } finally {
      setBusy(false);
    }
  };

  return (
    <span className="gf-image-field">
      <ChoiceField {...props} />
      <button
        type="button"
        className="nodrag"
        data-testid={`${props.testId}-upload`}
        disabled={busy}
        onClick={() => chooser.current?.click()}
      >
        {busy ? "uploading…" : "upload…"}
      </button>
      <input
        ref={chooser}
        type="file"
        accept="image/png,image/jpeg,image/webp,image/gif,image/bmp,image/tiff"
        hidden
        data-testid={`${props.testId}-file`}
        onChange={(event) => {
          const file = event.target.files?.[0];
          if (file) void upload(file);
          event.target.value = "";
        }}
      />
      {typeof props.value === "string" && props.value && (
        <img
          className="gf-thumb"
          alt={props.value}
          src={viewUrl({ filename: props.value, type: "input" })}
        />
      )}
    </span>
  );
}
