"""The downhill command, driven through click's CliRunner."""

import json
import logging
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

import downhill
from downhill import cli

FAST = ['--mode', 'FAST_COMPILE']


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(cli.main, [str(a) for a in args], catch_exceptions=False)
    return invoke


# ------------------------------------------------------------ algorithms

def test_algorithms_lists_every_registered_algorithm_from_the_code(run):
    result = run('algorithms')
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for name, cls in downhill.algorithms().items():
        shown = downhill.optimizer.registry.spelling(name)  # newton-cg, as the docs write it
        line = next(l for l in lines if l.startswith(shown + ' '))
        assert cli._first_line(cls) in line
    assert 'newtoncg' not in result.output
    assert 'beta1_halflife=7' in result.output
    assert 'rprop_increase=1.01' in result.output
    assert 'rms_halflife=14' in result.output
    assert 'learning_rate=0.0001' in result.output and 'momentum=0' in result.output
    assert 'patience=5' in result.output and 'validate_every=10' in result.output


def test_algorithms_follows_new_subclasses(run):
    class Cli_Test_Algo(downhill.SGD):
        """A made-up algorithm for this test."""

        def _prepare(self, wobble=0.25, **kwargs):
            super()._prepare(**kwargs)

    try:
        result = run('algorithms')
        assert 'clitestalgo' in result.output
        assert 'A made-up algorithm for this test.' in result.output
        assert 'wobble=0.25' in result.output
        assert 'wobble' in cli.valid_keywords(Cli_Test_Algo)
        assert 'learning_rate' in cli.valid_keywords(Cli_Test_Algo)
    finally:
        downhill.optimizer.registry.unregister('clitestalgo')


def test_algorithms_name_shows_the_docstring(run):
    result = run('algorithms', 'ADAM')
    assert result.exit_code == 0
    assert 'King15' in result.output and 'beta2_halflife=69' in result.output
    result = run('algorithms', 'adamm')
    assert result.exit_code == 2
    assert 'adam' in result.output and 'sgd' in result.output


def test_hyperparameters_walk_the_mro():
    hyper = cli.hyperparameters(downhill.RMSProp)
    assert list(hyper)[:2] == ['rms_halflife', 'rms_regularizer']
    assert hyper['learning_rate'] == 1e-4
    assert cli.hyperparameters(downhill.NAG, common=False) == {}
    assert 'max_updates' in cli.loop_keywords() and 'reset' in cli.loop_keywords()


def test_landscapes_lists_them(run):
    result = run('landscapes')
    assert result.exit_code == 0
    for name in downhill.landscapes.LANDSCAPES:
        assert name in result.output
    assert ':math:' not in result.output


# ------------------------------------------------------------------ race

def test_race_prints_a_table_and_writes_json(run, tmp_path):
    out = tmp_path / 'race.json'
    result = run('race', 'quadratic', '--algo', 'adam', '--algo', 'sgd,nag', '--steps', 40,
                 '--tol', 0.5, '--json', out, *FAST)
    assert result.exit_code == 0, result.output
    table = result.output.splitlines()
    header = next(l for l in table if l.startswith('algorithm'))
    assert 'final loss' in header and 'distance' in header and 'updates to 0.5' in header
    assert 'time (s)' in header
    rows = [l.split()[0] for l in table[table.index(header) + 2:] if l and not l.startswith('wrote')]
    assert rows == ['adam', 'sgd', 'nag']
    data = json.loads(out.read_text())
    assert data['landscape'] == 'quadratic' and data['steps'] == 40
    by = {r['algo']: r for r in data['results']}
    assert by['sgd']['hyperparameters']['momentum'] == 0.9
    for r in data['results']:
        assert len(r['path']) == 41 and len(r['losses']) == 41
        assert r['path'][0] == [1.0, 1.0]
        assert r['final_loss'] < r['losses'][0]
        assert r['final_loss'] == pytest.approx(r['losses'][-1])
        assert r['updates_to_tol'] is None or 0 < r['updates_to_tol'] <= 40


def test_race_records_the_final_point_not_the_restored_start():
    problem = downhill.landscapes.rosenbrock()
    r = cli.run_race(problem, 'adam', 30, {'learning_rate': 0.05}, mode='FAST_COMPILE')
    assert r['path'].shape == (31, 2)
    assert not np.allclose(r['final_point'], problem.start)
    assert r['distance'] == pytest.approx(np.linalg.norm(r['final_point'] - [1, 1]))
    np.testing.assert_allclose(problem.param.get_value(), problem.start)
    # The same start and settings give the same path.
    again = cli.run_race(problem, 'adam', 30, {'learning_rate': 0.05}, mode='FAST_COMPILE')
    np.testing.assert_array_equal(r['path'], again['path'])


def test_race_distance_counts_the_nearest_of_several_minima():
    problem = downhill.landscapes.himmelblau()
    other = problem.metadata['all_minima'][2]
    assert cli._distance(problem, other + [0, 0.1]) == pytest.approx(0.1)


def test_race_marks_divergence(run):
    result = run('race', 'rosenbrock', '-a', 'sgd', '-n', 60, '--set', 'learning_rate=0.5', *FAST)
    assert result.exit_code == 0, result.output
    assert 'diverged' in result.output


def test_race_start_set_and_per_algorithm_settings(run, tmp_path):
    out = tmp_path / 'r.json'
    result = run('race', 'beale', '-a', 'adam', '-a', 'rprop', '-n', 5, '--start=-1,2.5',
                 '--set', 'learning_rate=0.02', '--set', 'rprop.rprop_increase=1.5',
                 '--set', 'beta1_halflife=3', '--json', out, *FAST)
    assert result.exit_code == 0, result.output
    by = {r['algo']: r for r in json.loads(out.read_text())['results']}
    assert by['adam']['path'][0] == [-1.0, 2.5]
    assert by['adam']['hyperparameters']['learning_rate'] == 0.02
    assert by['adam']['hyperparameters']['beta1_halflife'] == 3
    assert 'beta1_halflife' not in by['rprop']['hyperparameters']
    assert by['rprop']['hyperparameters']['rprop_increase'] == 1.5
    assert by['rprop']['hyperparameters']['learning_rate'] == 0.02


def test_race_dim_and_json_to_stdout(run):
    result = run('race', 'styblinski-tang', '-d', 3, '-a', 'adam', '-n', 3, '--json', '-', '-q', *FAST)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data['d'] == 3 and len(data['start']) == 3


@pytest.mark.parametrize('args, message', [
    (['race', 'rosenbrok'], "did you mean 'rosenbrock'"),
    (['race', 'nowhere'], 'valid names: rosenbrock, ackley'),
    (['race', 'rosenbrock', '--algo', 'adamm'], "did you mean 'adam'"),
    (['race', 'rosenbrock', '--algo', 'nope'], 'valid names: adadelta'),
    (['race', 'rosenbrock', '--set', 'learning_rte=0.1'], "did you mean 'learning_rate'"),
    (['race', 'rosenbrock', '--set', 'learning_rate'], 'KEY=VALUE'),
    (['race', 'rosenbrock', '-a', 'sgd', '--set', 'beta1_halflife=3'], 'it is a hyperparameter of adam'),
    (['race', 'rosenbrock', '-a', 'sgd', '--set', 'adam.learning_rate=3'], 'not racing'),
    (['race', 'rosenbrock', '--set', 'adm.learning_rate=3'], "unknown algorithm 'adm'"),
    (['race', 'rosenbrock', '--start', '1,2,3'], '3 coordinates but the landscape has 2'),
    (['race', 'rosenbrock', '--start', 'a,b'], 'comma-separated'),
    (['race', 'beale', '--dim', '3'], 'two-dimensional only'),
    (['race', 'rosenbrock', '--steps', '0'], '--steps'),
    (['race', 'rosenbrock', '-a', 'sgd', '-n', '2', '--set', 'learning_rate=abc', *FAST],
     'learning_rate must be a number'),
    (['race', 'rosenbrock', '-a', 'sgd', '-n', '2', '--set', 'momentum=-1', *FAST], 'momentum must be >= 0'),
])
def test_race_usage_errors_exit_2(run, args, message):
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_race_plot_renders_a_real_picture(run, tmp_path):
    pytest.importorskip('matplotlib')
    from matplotlib import image
    out = tmp_path / 'race.png'
    result = run('race', 'rosenbrock', '-a', 'adam', '-a', 'nag', '-a', 'rprop', '-n', 40,
                 '--plot', out, *FAST)
    assert result.exit_code == 0, result.output
    assert f'wrote {out}' in result.output
    assert out.stat().st_size > 30_000
    pixels = image.imread(str(out))
    height, width = pixels.shape[:2]
    assert width >= 800 and height >= 400
    rgb = (pixels[..., :3] * 255).astype(int).reshape(-1, 3)
    colours = {tuple(c) for c in rgb[::7]}
    assert len(colours) > 50
    # Each algorithm's own colour is drawn.
    from matplotlib.colors import to_rgb
    from downhill.plot import COLORS
    for algo in ('adam', 'nag', 'rprop'):
        want = np.array(to_rgb(COLORS[algo])) * 255
        assert (np.abs(rgb - want).max(axis=1) <= 3).sum() > 50, algo


def test_race_default_mode_runs(run):
    result = run('race', 'quadratic', '-a', 'rmsprop', '-n', 3)
    assert result.exit_code == 0, result.output


# ------------------------------------------------------------------- fit

SCRIPT = '''
import numpy as np
import pytensor
import pytensor.tensor as pt

rng = np.random.default_rng(3)
X = rng.normal(size=(64, 3))
Y = X @ np.array([1.0, -2.0, 0.5]) + 0.25


def problem():
    x = pt.matrix('x')
    y = pt.vector('y')
    w = pytensor.shared(np.zeros(3), name='w')
    b = pytensor.shared(0.0, name='b')
    err = pt.sqr(pt.dot(x, w) + b - y).mean()
    return {'loss': err, 'inputs': [x, y], 'train': [X, Y], 'valid': [X, Y],
            'monitors': {'abs_w': abs(w).sum()}}


def noinputs():
    z = pytensor.shared(np.array([3.0, -1.0]))
    return {'loss': pt.sqr(z - 1).sum()}


def not_a_dict():
    return 3


def no_loss():
    return {'params': []}


def typo():
    z = pytensor.shared(1.0, name='z')
    return {'loss': z ** 2, 'paramz': [z]}


def float_loss():
    return {'loss': 1.5}


def vector_loss():
    z = pytensor.shared(np.ones(2), name='z')
    return {'loss': z ** 2}


def broken():
    raise RuntimeError('model construction failed')

NOT_CALLABLE = 4
'''


@pytest.fixture
def script(tmp_path):
    path = tmp_path / 'model.py'
    path.write_text(textwrap.dedent(SCRIPT))
    return path


def test_fit_minimizes_and_saves_parameters_by_name(run, script, tmp_path):
    out = tmp_path / 'params.npz'
    result = run('fit', f'{script}:problem', '--algo', 'adam', '--set', 'learning_rate=0.1',
                 '--set', 'max_updates=150', '--set', 'batch_size=16', '--set', 'patience=50',
                 '--save', out, *FAST)
    assert result.exit_code == 0, result.output
    assert 'adam: 150 iterations (600 updates)' in result.output
    assert 'best validation loss' in result.output
    assert 'abs_w=' in result.output
    saved = np.load(out)
    assert sorted(saved.files) == ['b', 'w']
    np.testing.assert_allclose(saved['w'], [1.0, -2.0, 0.5], atol=0.05)
    np.testing.assert_allclose(saved['b'], 0.25, atol=0.05)
    assert 'saved 2 parameters (w, b)' in result.output


def test_fit_without_inputs_and_unnamed_parameters(run, script, tmp_path):
    out = tmp_path / 'p.npz'
    result = run('fit', f'{script}:noinputs', '-a', 'sgd', '-s', 'learning_rate=0.1',
                 '-s', 'max_updates=100', '-s', 'nesterov=true', '-s', 'momentum=0.5',
                 '--save', out, *FAST)
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(out)['param0'], [1.0, 1.0], atol=1e-3)


def test_fit_logs_progress_when_not_a_terminal(run, script):
    result = run('fit', f'{script}:noinputs', '-s', 'max_updates=3', '-s', 'learning_rate=0.1', *FAST)
    assert result.exit_code == 0
    assert 'downhill RMSProp' in result.stderr
    quiet = run('fit', f'{script}:noinputs', '-s', 'max_updates=3', '-q', *FAST)
    assert quiet.exit_code == 0 and quiet.output == ''


def test_fit_restores_logging(run, script):
    log = logging.getLogger('downhill')
    before = (list(log.handlers), log.level, log.propagate)
    run('fit', f'{script}:noinputs', '-s', 'max_updates=2', *FAST)
    assert (list(log.handlers), log.level, log.propagate) == before


@pytest.mark.parametrize('target, code, message', [
    ('missing.py:problem', 2, "'missing.py': no such file"),
    ('{script}', 2, 'is not SCRIPT.py:FUNCTION'),
    ('{script}:nothere', 2, "has no function 'nothere'; it defines"),
    ('{script}:NOT_CALLABLE', 2, 'is a int, not a function'),
    ('{script}:not_a_dict', 1, "returned int; expected a dict with 'loss'"),
    ('{script}:no_loss', 1, "without 'loss'"),
    ('{script}:typo', 1, "'paramz' (did you mean 'params'?)"),
    ('{script}:float_loss', 1, "'loss' is a float; expected a scalar PyTensor expression"),
    ('{script}:vector_loss', 1, "with 1 dimensions; expected a scalar"),
    ('{script}:broken', 1, 'RuntimeError: model construction failed'),
])
def test_fit_errors_say_what_was_expected(run, script, target, code, message):
    result = run('fit', target.format(script=script), *FAST)
    assert result.exit_code == code, result.output
    assert message in result.output


def test_fit_setting_errors(run, script):
    result = run('fit', f'{script}:noinputs', '--set', 'learning_rte=0.1')
    assert result.exit_code == 2 and "did you mean 'learning_rate'" in result.output
    result = run('fit', f'{script}:noinputs', '-a', 'sgd', '--set', 'beta2_halflife=3')
    assert result.exit_code == 2 and 'not a hyperparameter of sgd' in result.output
    result = run('fit', f'{script}:noinputs', '--set', 'patience=-1', *FAST)
    assert result.exit_code == 2 and 'patience must be >= 0' in result.output
    result = run('fit', f'{script}:noinputs', '--algo', 'bogus')
    assert result.exit_code == 2 and 'valid names' in result.output


def test_fit_script_that_fails_on_import(run, tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text('import nonexistent_module_xyz\n')
    result = run('fit', f'{bad}:f')
    assert result.exit_code == 1
    assert 'nonexistent_module_xyz' in result.output and 'Traceback' not in result.output.split('\n')[0]


def test_parse_value():
    assert cli.parse_value('3') == 3 and isinstance(cli.parse_value('3'), int)
    assert cli.parse_value('1e-3') == 1e-3 and cli.parse_value('.5') == 0.5
    assert cli.parse_value('-2.5') == -2.5
    assert cli.parse_value('true') is True and cli.parse_value('False') is False
    assert cli.parse_value('none') is None
    assert cli.parse_value('rop') == 'rop'


def test_status_line_is_rate_limited_and_off_without_terminal(capsys):
    status = cli.StatusLine(enabled=False)
    status('hello', force=True)
    status.clear()
    assert capsys.readouterr().err == ''
    status = cli.StatusLine(enabled=True, interval=60)
    status('first', force=True)
    status('second')            # within the interval: not shown
    status.clear()
    err = capsys.readouterr().err
    assert 'first' in err and 'second' not in err


def test_version(run):
    result = run('--version')
    assert result.exit_code == 0 and downhill.__version__ in result.output


def test_race_verbose_prints_the_settings(run):
    result = run('race', 'quadratic', '-a', 'sgd', '-n', 3, '-v', *FAST)
    assert result.exit_code == 0, result.output
    assert 'settings:' in result.output and 'sgd: learning_rate=0.001 momentum=0.9' in result.output


def test_race_defaults_follow_the_class_hierarchy():
    class Cli_Test_Adam(downhill.Adam):
        """Adam, renamed."""

    try:
        assert cli.race_defaults('rosenbrock', 'clitestadam') == cli.race_defaults('rosenbrock', 'adam')
        assert cli.race_defaults('ackley', 'adagrad')['learning_rate'] == 3.0
        assert cli.race_defaults('beale', 'adagrad') == cli.RACE_DEFAULTS['*']['adagrad']
        assert cli.race_steps('rosenbrock') == 1000 and cli.race_steps('beale') == 500
    finally:
        downhill.optimizer.registry.unregister('clitestadam')


def test_fit_prints_the_best_loss_of_the_parameters_it_saves(run, tmp_path, monkeypatch):
    """L-BFGS converges between validations: the printed best is that of the saved w."""
    (tmp_path / 'ones.py').write_text(textwrap.dedent('''
        import numpy as np, pytensor, pytensor.tensor as pt

        def problem():
            w = pytensor.shared(np.zeros(3), name='w')
            return {'loss': pt.sqr(w - 1).sum()}
    '''))
    monkeypatch.chdir(tmp_path)
    result = run('fit', 'ones.py:problem', '--algo', 'lbfgs', '--save', tmp_path / 'w.npz', *FAST)
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / 'w.npz') as f:
        w = f['w']
    printed = float(result.stdout.split('best validation loss: ')[1].split()[0])
    assert printed == pytest.approx(float(((w - 1) ** 2).sum()), abs=1e-12)
    assert printed < 1e-10


def test_race_json_to_stdout_is_the_json_alone(run):
    result = run('race', 'rosenbrock', '-a', 'adam', '-a', 'sgd', '-n', 3, '--json', '-', *FAST)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # nothing but the JSON on stdout
    assert [r['algo'] for r in data['results']] == ['adam', 'sgd']
    assert 'final loss' in result.stderr  # the table went to stderr
