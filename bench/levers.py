"""The library's speed settings (`distilled_learner(precision=, teacher_precision=, channels_last=, compile=)`) applied by
hand to the bare loops of `bench.py`, so that the compute bound always does the same arithmetic as our path."""
import torch
from gift_fastai.callbacks import autocast_for


def resolve(precision:str='fp32', teacher_precision=None, channels_last=None, device='cpu', tune_alloc=True, compile=None) -> dict:
    "The settings as `distilled_learner` resolves them (channels_last None: on for the CPU and for bf16/fp16; compile None: eager)."
    if channels_last is None: channels_last = torch.device(device).type == 'cpu' or precision != 'fp32'
    return dict(precision=precision, teacher_precision=teacher_precision or precision, channels_last=bool(channels_last),
                tune_alloc=bool(tune_alloc), compile=compile)


def label(s:dict) -> str:
    "A short name of the settings: 'fp32', 'bf16', 'fp32-nchw', 'fp32-teacher-bf16', ..."
    return (s['precision'] + ('' if s['teacher_precision'] == s['precision'] else f"-teacher-{s['teacher_precision']}")
            + ('' if s['channels_last'] else '-nchw') + ('' if s.get('tune_alloc', True) else '-malloc')
            + (f"-compile-{s['compile']}" if s.get('compile') else ''))


def prepare(model, teacher, s:dict):
    "The student, and the teacher as a function of a batch (inference mode, float32 logits), laid out and cast as `s` says."
    if s.get('tune_alloc', True):
        from gift_fastai.learner import tune_allocator
        tune_allocator()  # process-wide, as distilled_learner does it
    if s['channels_last']:
        model = model.to(memory_format=torch.channels_last); teacher = teacher.to(memory_format=torch.channels_last)
    dev = next(teacher.parameters()).device
    call = teacher
    if s.get('compile'):  # as TorchCompile and TeacherRelabel(compile=) do: the student in place, the teacher through a wrapper
        model.compile(mode=s['compile']); call = torch.compile(teacher, mode=s['compile'])
    graphs = s.get('compile') in ('reduce-overhead', 'max-autotune') and dev.type == 'cuda'

    def teach(x):
        if graphs: torch.compiler.cudagraph_mark_step_begin()  # (TorchCompile marks each step's start)
        with torch.inference_mode(), autocast_for(s['teacher_precision'], dev): out = call(x).float()
        return out.clone()
    return model, teach


def to_input(x, s:dict): return x.contiguous(memory_format=torch.channels_last) if s['channels_last'] else x


def student_ctx(s:dict, device): return autocast_for(s['precision'], device)


def learner_kwargs(s:dict) -> dict: return dict(s)
