// Plain input widgets for literal node inputs (numbers, sliders, choices, text, booleans).
import { useEffect, useState } from "react";
import type { InputSpec } from "../api/catalog";
import { choiceText, parseNumber } from "../graph/values";

export interface FieldProps {
  input: InputSpec;
  value: unknown;
  testId: string;
  onChange(value: unknown): void;
}

function numberStep(input: InputSpec): number | "any" {
  if (input.step !== undefined) return input.step;
  return input.type === "INT" ? 1 : "any";
}

/** A number box that lets the text be mid-edit ("-", "0.") and commits parsable values. */
export function NumberField({ input, value, testId, onChange }: FieldProps) {
  const [draft, setDraft] = useState(String(value ?? ""));
  const [editing, setEditing] = useState(false);
  useEffect(() => {
    if (!editing) setDraft(String(value ?? ""));
  }, [value, editing]);
  return (
    <input
      className="gf-field gf-number nodrag"
      type="number"
      data-testid={testId}
      value={draft}
      min={input.min}
      max={input.max}
      step={numberStep(input)}
      onFocus={() => setEditing(true)}
      onChange={(event) => {
        setDraft(event.target.value);
        const parsed = parseNumber(input, event.target.value);
        if (parsed !== undefined && parsed === Number(event.target.value)) onChange(parsed);
      }}
      onBlur={() => {
        setEditing(false);
        const parsed = parseNumber(input, draft);
        if (parsed !== undefined) onChange(parsed);
        setDraft(String(parsed ?? value ?? ""));
      }}
    />
  );
}

export function SliderField(props: FieldProps) {
  const { input, value, testId, onChange } = props;
  return (
    <span className="gf-slider">
      <input
        className="nodrag"
        type="range"
        aria-label={input.name}
        data-testid={`${testId}-slider`}
        min={input.min}
        max={input.max}
        step={numberStep(input)}
        value={typeof value === "number" ? value : (input.min ?? 0)}
        onChange={(event) => {
          const parsed = parseNumber(input, event.target.value);
          if (parsed !== undefined) onChange(parsed);
        }}
      />
      <NumberField {...props} />
    </span>
  );
}

export function ChoiceField({ input, value, testId, onChange }: FieldProps) {
  const choices = input.choices ?? [];
  const index = choices.findIndex((choice) => choice === value);
  return (
    <select
      className="gf-field nodrag"
      data-testid={testId}
      title={index >= 0 ? choiceText(input, choices[index]) : undefined}
      value={index >= 0 ? String(index) : "missing"}
      onChange={(event) => onChange(choices[Number(event.target.value)])}
    >
      {index < 0 && (
        <option value="missing" disabled>
          {value === undefined ? "(choose)" : `${String(value)} (not available)`}
        </option>
      )}
      {choices.map((choice, i) => (
        <option key={String(choice)} value={String(i)}>
          {choiceText(input, choice)}
        </option>
      ))}
    </select>
  );
}

export function TextField({ input, value, testId, onChange }: FieldProps) {
  const text = value === undefined || value === null ? "" : String(value);
  if (input.multiline) {
    return (
      <textarea
        className="gf-field gf-multiline nodrag nowheel"
        data-testid={testId}
        rows={4}
        value={text}
        onChange={(event) => onChange(event.target.value)}
      />
    );
  }
  return (
    <input
      className="gf-field nodrag"
      type="text"
      data-testid={testId}
      value={text}
      placeholder={input.required ? "required" : ""}
      onChange={(event) => onChange(event.target.value)}
    />
  );
}

export function BooleanField({ value, testId, onChange }: FieldProps) {
  return (
    <input
      className="nodrag"
      type="checkbox"
      data-testid={testId}
      checked={value === true}
      onChange={(event) => onChange(event.target.checked)}
    />
  );
}
